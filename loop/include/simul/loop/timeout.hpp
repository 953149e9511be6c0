#pragma once

// simul::timeout / timeout_at: a deadline scope (asyncio.timeout), reschedulable.
//
//   auto r = co_await simul::timeout(50ms)(fetch());      // one-shot
//
//   simul::timeout_scope cm = simul::timeout_at(when);    // named, to reschedule
//   co_await cm(work(cm));                                // work may call cm.reschedule(...)
//
// The scope's awaitable runs its body inside the awaiting task. When the
// deadline passes, the task is cancelled (its current `co_await` throws
// `cancelled_error` and the body unwinds); when the body has unwound, the
// scope turns that cancellation into `timeout_error`. A cancellation that came
// from outside at the same time is not turned into a timeout: it propagates
// as `cancelled_error` (asyncio's cancelling()/uncancel() bookkeeping). If the
// body swallows the cancellation and finishes, its result is returned.
//
// Thread-safety: loop thread only. Lifetime: the scope must outlive the
// `co_await` of the body; it is not movable (bodies may refer to it).

#include <simul/core/detail/futex.hpp>
#include <simul/core/wait.hpp>
#include <simul/loop/detail/awaitable.hpp>
#include <simul/loop/event_loop.hpp>
#include <simul/loop/task.hpp>
#include <simul/loop/task_handle.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace simul {

/// A deadline scope. See the file comment.
class timeout_scope {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  /// A scope with deadline `when` (none: no deadline until rescheduled).
  explicit timeout_scope(std::optional<time_point> when) noexcept : m_when(when) {}
  timeout_scope(const timeout_scope&) = delete;
  timeout_scope& operator=(const timeout_scope&) = delete;
  ~timeout_scope() { m_timer.cancel(); }

  /// The current deadline, if any.
  [[nodiscard]] std::optional<time_point> when() const noexcept { return m_when; }
  /// Moves the deadline (none removes it). Throws `simul::error` once the
  /// scope expired or exited.
  void reschedule(std::optional<time_point> when);
  /// True once the deadline passed while the body ran.
  [[nodiscard]] bool expired() const noexcept { return m_state == state::expiring || m_state == state::expired; }

  /// Runs any other awaitable inside the scope (a lock's `acquire()`, a
  /// queue's `get()`, a stream read, a future...), as asyncio's timeout
  /// takes any await. An rvalue is moved into the scope's task.
  template <class A>
  requires(!detail::is_lazy_task<std::remove_cvref_t<A>> && detail::awaitable_object<A>) task<detail::await_result_t<A>>
  operator()(A&& aw) { return (*this)(detail::as_task(std::forward<A>(aw))); }

  /// Runs `body` inside the scope (a `task<T>`, awaited inline); its result
  /// or `timeout_error`. Each scope runs one body.
  template <class T>
  task<T> operator()(task<T> body) {
    enter();
    std::exception_ptr error;
    if constexpr (std::is_void_v<T>) {
      try {
        co_await std::move(body);
      } catch (...) {
        error = std::current_exception();
      }
      leave(error);
    } else {
      std::optional<T> value;
      try {
        value.emplace(co_await std::move(body));
      } catch (...) {
        error = std::current_exception();
      }
      leave(error);
      co_return std::move(*value);
    }
  }

 private:
  enum class state { created, entered, expiring, expired, exited };
  void enter();
  void leave(std::exception_ptr error); // rethrows error, or throws timeout_error
  void arm();
  void on_deadline();

  std::optional<time_point> m_when;
  handle m_timer;
  basic_task_handle m_task;
  int m_cancelling = 0;
  state m_state = state::created;
};

/// A deadline scope `delay` from now (asyncio.timeout); `no_timeout` gives
/// a scope with no deadline (asyncio.timeout(None)). A deadline past the
/// clock's range saturates.
[[nodiscard]] inline timeout_scope timeout(std::chrono::nanoseconds delay) {
  if (delay == no_timeout) {
    return timeout_scope(std::nullopt);
  }
  return timeout_scope(detail::deadline_after(delay));
}

/// A deadline scope at `when` on the loop's clock, or none (asyncio.timeout_at).
[[nodiscard]] inline timeout_scope timeout_at(std::optional<std::chrono::steady_clock::time_point> when) {
  return timeout_scope(when);
}

} // namespace simul
