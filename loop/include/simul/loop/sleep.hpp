#pragma once

// simul::sleep and simul::yield_now: suspending the current task for a while.
//
// `co_await sleep(d)` suspends the task for at least `d` on the loop's clock
// (libuv timers have millisecond resolution, so a sleep may last up to a
// millisecond longer); `co_await yield_now()` (or `sleep(0)`) lets every other
// ready callback and task run once before the task continues, like asyncio's
// `sleep(0)`. Both are cancellation points: cancelling the task makes the
// `co_await` throw `cancelled_error`, and a cancelled sleep leaves no timer
// behind.
//
// Thread-safety: loop thread only, inside a task. Lifetime: the awaitable
// lives in the awaiting frame; destroying the frame while it sleeps (a loop
// closing) disarms the timer.

#include <simul/core/detail/futex.hpp>
#include <simul/loop/detail/task_base.hpp>

#include <chrono>
#include <coroutine>

namespace simul {

namespace detail {

class sleep_awaiter final : public waiter {
 public:
  explicit sleep_awaiter(std::chrono::steady_clock::duration d) noexcept : m_duration(d) {}
  /// Moves a sleep that was not awaited yet (into a combinator's task).
  sleep_awaiter(sleep_awaiter&& o) noexcept : waiter(o), m_duration(o.m_duration) {}
  sleep_awaiter(const sleep_awaiter&) = delete;
  sleep_awaiter& operator=(const sleep_awaiter&) = delete;
  ~sleep_awaiter() { disarm(); }

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h);
  void await_resume() { check_cancel(); }
  bool on_cancel() noexcept override;
  /// When the sleep ends (meaningful while it is armed).
  [[nodiscard]] std::chrono::steady_clock::time_point deadline() const noexcept { return m_entry.deadline; }

 private:
  static void fire(timer_entry* entry) noexcept;
  void disarm() noexcept;

  std::chrono::steady_clock::duration m_duration;
  timer_entry m_entry;
};

/// yield_now's awaitable: no timer, nothing to stop (the next step is queued
/// at once); a cancellation that comes meanwhile is thrown at resumption.
class yield_awaiter {
 public:
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) { return yield_suspend(h); }
  void await_resume() { yield_resume(); }
};

} // namespace detail

/// Suspends the current task for at least `delay` (asyncio.sleep).
/// A zero or negative delay is `yield_now()`.
/// Thread-safety: loop thread, inside a task.
template <class Rep, class Period>
[[nodiscard]] detail::sleep_awaiter sleep(std::chrono::duration<Rep, Period> delay) {
  return detail::sleep_awaiter(detail::saturating_duration(delay));
}

/// Lets the other ready callbacks and tasks run once (asyncio.sleep(0)).
/// Thread-safety: loop thread, inside a task.
[[nodiscard]] inline detail::yield_awaiter yield_now() noexcept { return {}; }

} // namespace simul
