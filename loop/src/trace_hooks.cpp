// The out-of-line halves of the loop's trace hooks (see trace_hooks.hpp).

#include "trace_hooks.hpp"

#include <string>
#include <typeinfo>

namespace simul::detail {

// create_task names the task and sets its place after start(): both are
// recorded at its first step, which keeps creation cheap.
void trace_task_created_slow(const task_base& t) noexcept { trace_create(&t, t.id(), {}, nullptr, 0); }

void trace_task_named_slow(const task_base& t) noexcept {
  try {
    const auto& where = t.where();
    trace_rename(&t, t.name(), where.file_name(), static_cast<std::uint32_t>(where.line()));
  } catch (...) {
  }
}

// A name set after the first step is not recorded (rare; it keeps
// completion cheap).
void trace_task_done_slow(const task_base& t) noexcept { trace_end(&t, t.id(), {}); }

void trace_task_waits_slow(const task_base& t, const waiter& w) noexcept { trace_wait(&t, typeid(w).name()); }

} // namespace simul::detail
