#pragma once

// The loop's hooks into simul::trace (private): each is one line at its place
// in task_base.cpp and costs one relaxed load while tracing is off.

#include <simul/loop/detail/task_base.hpp>
#include <simul/trace/detail/recorder.hpp>

namespace simul::detail {

void trace_task_created_slow(const task_base& t) noexcept;
void trace_task_named_slow(const task_base& t) noexcept;
void trace_task_done_slow(const task_base& t) noexcept;
void trace_task_waits_slow(const task_base& t, const waiter& w) noexcept;

/// In task_base::start: the task exists from now.
inline void trace_task_created(const task_base& t) noexcept {
  if (trace_on()) [[unlikely]] {
    trace_task_created_slow(t);
  }
}
/// At a task's first step: its name and place as set by then (create_task
/// sets both after start).
inline void trace_task_named(const task_base& t) noexcept {
  if (trace_on()) [[unlikely]] {
    trace_task_named_slow(t);
  }
}
/// In task_base::complete: the task is done.
inline void trace_task_done(const task_base& t) noexcept {
  if (trace_on()) [[unlikely]] {
    trace_task_done_slow(t);
  }
}
/// In waiter::suspend_on: the task suspends on `w`.
inline void trace_task_waits(const task_base& t, const waiter& w) noexcept {
  if (trace_on()) [[unlikely]] {
    trace_task_waits_slow(t, w);
  }
}

/// Around a task's step: one run slice. Does not touch the task after the
/// step (the step may free it).
class trace_step_scope {
 public:
  explicit trace_step_scope(const task_base& t) noexcept {
    if (trace_on()) [[unlikely]] {
      m_key = &t;
      m_id = t.id();
      m_t0 = trace_now();
    }
  }
  trace_step_scope(const trace_step_scope&) = delete;
  trace_step_scope& operator=(const trace_step_scope&) = delete;
  ~trace_step_scope() {
    if (m_key != nullptr) [[unlikely]] {
      trace_run(m_key, m_id, nullptr, m_t0, trace_now());
    }
  }

 private:
  const void* m_key = nullptr;
  std::uint64_t m_id = 0;
  std::int64_t m_t0 = 0;
};

} // namespace simul::detail
