// sleep and yield_now: one entry in the loop's timer heap, owned by the frame.

#include "loop_internal.hpp"

#include <simul/loop/sleep.hpp>
#include <simul/loop/task_handle.hpp>

namespace simul::detail {

bool sleep_awaiter::await_suspend(std::coroutine_handle<> h) {
  if (!suspend_on(h)) {
    return false;
  }
  if (m_duration <= std::chrono::steady_clock::duration::zero()) {
    // A bare yield: the next step is queued behind everything ready now.
    wake();
    return true;
  }
  m_entry.deadline = deadline_after(m_duration); // saturates
  m_entry.owner = this;
  m_entry.fire = &sleep_awaiter::fire;
  loop_add_timer(m_task->loop(), m_entry);
  return true;
}

bool sleep_awaiter::on_cancel() noexcept {
  if (!m_entry.armed()) {
    return false;
  }
  loop_remove_timer(m_task->loop(), m_entry);
  abort_and_wake();
  return true;
}

void sleep_awaiter::fire(timer_entry* entry) noexcept { static_cast<sleep_awaiter*>(entry->owner)->wake(); }

void sleep_awaiter::disarm() noexcept {
  if (m_entry.armed() && m_task != nullptr) {
    loop_remove_timer(m_task->loop(), m_entry);
  }
}

} // namespace simul::detail

namespace simul {

std::exception_ptr basic_task_handle::exception() const {
  auto& t = base();
  if (!t.done()) {
    throw invalid_state_error("exception is not set: the task is not done");
  }
  t.mark_retrieved();
  if (t.is_cancelled()) {
    std::rethrow_exception(t.error());
  }
  return t.error();
}

} // namespace simul

#include <simul/loop/bridge.hpp>

namespace simul::detail {

void post_wake(event_loop& loop, std::shared_ptr<future_wait_base*> cell) noexcept {
  try {
    loop.call_soon_threadsafe([cell] {
      if (auto* w = *cell) {
        w->woken();
      }
    });
  } catch (...) {
    // The loop is closed: nobody is left to resume.
  }
}

} // namespace simul::detail
