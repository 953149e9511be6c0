// context_var's current context: the running task's, or the thread's.

#include <simul/loop/context_var.hpp>
#include <simul/loop/detail/task_base.hpp>

#include <atomic>

namespace simul::detail {

namespace {
thread_local context_ptr t_thread_context;
std::atomic<std::uint64_t> g_next_var_id{1};
} // namespace

std::uint64_t next_context_var_id() noexcept { return g_next_var_id.fetch_add(1, std::memory_order_relaxed); }

context_ptr current_context() noexcept {
  if (auto* t = current_task_or_null()) {
    const auto* slot = t->context_if_any();
    return slot != nullptr ? *slot : context_ptr();
  }
  return t_thread_context;
}

context_ptr& current_context_slot() {
  if (auto* t = current_task_or_null()) {
    return t->context_slot();
  }
  return t_thread_context;
}

const void* current_context_owner() noexcept {
  if (auto* t = current_task_or_null()) {
    return t;
  }
  return &t_thread_context;
}

context_scope::context_scope(context_ptr ctx) noexcept : m_previous(std::exchange(t_thread_context, std::move(ctx))) {}

context_scope::~context_scope() { t_thread_context = std::move(m_previous); }

} // namespace simul::detail
