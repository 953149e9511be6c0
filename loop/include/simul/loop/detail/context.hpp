#pragma once

// The machinery under context_var: a context is an immutable map from a
// variable's id to its value, shared by pointer. Copying a context (a task
// created from a task, a call handed to a thread) copies the pointer; `set`
// makes a new map, so a copy never sees later changes of the original.
//
// The current context is the running task's (kept with the task) or, outside
// any task, the calling thread's. Thread-safety: a map is never changed once
// built, so any thread may read one; each slot belongs to its task (loop
// thread) or its thread. Lifetime: shared_ptr.

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace simul::detail {

struct context_data {
  std::vector<std::pair<std::uint64_t, std::shared_ptr<const void>>> entries; // few: a linear search
  [[nodiscard]] const std::shared_ptr<const void>* find(std::uint64_t id) const noexcept {
    for (const auto& e : entries) {
      if (e.first == id) {
        return &e.second;
      }
    }
    return nullptr;
  }
};
using context_ptr = std::shared_ptr<const context_data>;

/// The current context (null: empty).
context_ptr current_context() noexcept;
/// Where the current context lives: the running task's slot or the thread's.
/// Allocates a task's rare part on first use (may throw bad_alloc).
context_ptr& current_context_slot();

/// Installs `ctx` as the thread's context for its lifetime (a call run on
/// another thread with its caller's context), then restores the previous one.
class context_scope {
 public:
  explicit context_scope(context_ptr ctx) noexcept;
  ~context_scope();
  context_scope(const context_scope&) = delete;
  context_scope& operator=(const context_scope&) = delete;

 private:
  context_ptr m_previous;
};

/// `f`, wrapped to run in the caller's current context on whatever thread
/// calls it (to_thread, run_in_executor).
template <class F>
auto with_current_context(F&& f) {
  return [ctx = current_context(), fn = std::decay_t<F>(std::forward<F>(f))](auto&&... args) mutable -> decltype(auto) {
    context_scope scope(ctx);
    return fn(std::forward<decltype(args)>(args)...);
  };
}

} // namespace simul::detail
