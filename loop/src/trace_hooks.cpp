// The out-of-line halves of the loop's trace hooks (see trace_hooks.hpp).

#include "trace_hooks.hpp"

#include <string>
#include <typeinfo>

namespace simul::detail {

void trace_task_created_slow(const task_base& t) noexcept {
  try {
    const auto& where = t.where();
    trace_create(&t, t.id(), t.name(), where.file_name(), static_cast<std::uint32_t>(where.line()));
  } catch (...) {
    // no memory for the name: the event is not recorded
  }
}

void trace_task_named_slow(const task_base& t) noexcept {
  try {
    const auto& where = t.where();
    trace_rename(&t, t.name(), where.file_name(), static_cast<std::uint32_t>(where.line()));
  } catch (...) {
  }
}

void trace_task_done_slow(const task_base& t) noexcept {
  try {
    trace_end(&t, t.id(), t.name());
  } catch (...) {
  }
}

void trace_task_waits_slow(const task_base& t, const waiter& w) noexcept { trace_wait(&t, typeid(w).name()); }

} // namespace simul::detail
