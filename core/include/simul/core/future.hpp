#pragma once

// simul::promise<T> and simul::future<T>: one result handed from a producer to a consumer.
//
// Every executor in simul (inline, thread pool, process pool, event loop) hands
// its results out as a `future<T>`, so the same consumer code waits on any of
// them. The contract:
//
// - One producer owns the promise and gives it exactly one result: a value, an
//   exception, or a cancellation. A promise destroyed without a result gives
//   its future a `future_error` with code `broken_promise`, so no consumer
//   waits forever.
// - One consumer owns the future and takes the value once with `get()`, which
//   rethrows the producer's exception (or `cancelled_error`). A second `get()`
//   throws `future_error{value_already_retrieved}`; any call on an empty future
//   throws `future_error{no_state}`.
// - `cancel()` stops work that has not started: the future completes as
//   cancelled at once, and a producer that checks
//   `promise::set_running_or_notify_cancel()` before starting never runs it.
//   Work that has started is asked to stop through the producer's cancel hook,
//   if it installed one (an event-loop task does; a thread-pool task does not).
// - `then(f)` and `on_ready(f)` run `f` on the thread that completes the
//   promise, or at once on the calling thread if the future is already ready.
//   Cancelling the future `then` returned cancels the future it chains from.
//
// Thread-safety: a promise and its future may be used from different threads
// at once: any thread completes, any thread waits. A single promise or future
// object is not meant to be used by two threads at the same time, except for
// `cancel()`, `ready()` and `cancelled()`, which are safe from any thread.
//
// Cost: the shared state is the only allocation; completing, checking and
// taking a result take no lock. A consumer that has to block sleeps on a futex,
// and the producer pays for a wake-up only when someone sleeps.

#include <simul/core/detail/shared_state.hpp>
#include <simul/core/error.hpp>

#include <chrono>
#include <concepts>
#include <exception>
#include <functional>
#include <type_traits>
#include <utility>

namespace simul {

template <class T>
class future;
template <class T>
class promise;

namespace detail {
/// simul's own combinators reach the shared state through this.
struct future_access {
  template <class T>
  static state_base& state(const future<T>& f) {
    return f.state();
  }
};
} // namespace detail

/// The consumer's end: waits for and takes one result.
///
/// Thread-safety: see the file comment. Lifetime: the shared state lives as
/// long as the promise, the future or a pending callback refers to it; a future
/// may be destroyed before its result arrives.
template <class T>
class [[nodiscard]] future {
 public:
  using value_type = T;

  /// An empty future: `valid()` is false.
  future() noexcept = default;
  future(future&&) noexcept = default;
  future& operator=(future&&) noexcept = default;
  future(const future&) = delete;
  future& operator=(const future&) = delete;

  /// True if the future refers to a shared state.
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(m_state); }

  /// True once the result (value, exception or cancellation) is available.
  [[nodiscard]] bool ready() const { return state().ready(); }

  /// True if the future completed as cancelled.
  [[nodiscard]] bool cancelled() const { return state().cancelled(); }

  /// Blocks until ready. On a pool worker this runs other queued work meanwhile.
  void wait() const { state().wait(); }

  /// Blocks until ready or until `timeout` passes; true if ready.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    return state().wait_until(detail::deadline_after(timeout));
  }

  /// Blocks until ready or until `deadline`; true if ready.
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> deadline) const {
    return wait_for(deadline - Clock::now());
  }

  /// Waits, then returns the value or rethrows the producer's exception.
  /// Throws `cancelled_error` if the work was cancelled. Callable once.
  T get() {
    auto& s = state();
    s.wait();
    if (!s.mark_retrieved()) {
      throw future_error(future_errc::value_already_retrieved);
    }
    if (s.error()) {
      std::rethrow_exception(s.error());
    }
    if constexpr (!std::is_void_v<T>) {
      return std::move(*s.value());
    }
  }

  /// As `get()`, waiting at most `timeout` (concurrent.futures'
  /// `result(timeout)`): throws `timeout_error` if the result is not ready by
  /// then, and the result stays to be taken later. `no_timeout` waits for ever.
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    if (!wait_for(timeout)) {
      throw timeout_error("future::get: the result was not ready before the timeout");
    }
    return get();
  }

  /// Waits, then returns the exception the work ended with (null on success;
  /// a `cancelled_error` if it was cancelled). Does not take the value.
  [[nodiscard]] std::exception_ptr exception() const {
    auto& s = state();
    s.wait();
    return s.error();
  }

  /// As `exception()`, waiting at most `timeout`: throws `timeout_error` if
  /// the result is not ready by then (concurrent.futures' `exception(timeout)`).
  template <class Rep, class Period>
  [[nodiscard]] std::exception_ptr exception(std::chrono::duration<Rep, Period> timeout) const {
    if (!wait_for(timeout)) {
      throw timeout_error("future::exception: the result was not ready before the timeout");
    }
    return state().error();
  }

  /// True while the work runs: the producer started it
  /// (`set_running_or_notify_cancel()`) and has not given its result yet
  /// (concurrent.futures' `running()`). Safe from any thread.
  [[nodiscard]] bool running() const { return state().running(); }

  /// Cancels the work. True if it will never run (it had not started, or was
  /// cancelled already) or the producer accepted the request; false if it
  /// already finished or cannot be interrupted. Safe from any thread.
  bool cancel() { return state().request_cancel(); }

  /// Runs `callback()` once the future is ready, on the completing thread (or
  /// now, if it is ready already). The future stays valid; this is the raw
  /// hook the other modules build on. A callback that throws does not stop
  /// the program: its exception goes to the running event loop's exception
  /// handler (on a loop's thread) or to stderr, and the other callbacks run.
  template <class F>
  requires(std::invocable<std::decay_t<F>&>) void on_ready(F&& callback) {
    state().add_callback([fn = std::decay_t<F>(std::forward<F>(callback))](detail::state_base&) mutable {
      try {
        fn();
      } catch (...) {
        detail::report_callback_error(std::current_exception());
      }
    });
  }

  /// Chains work on the result. `f` takes either the value (`f(T)`, or `f()`
  /// for `future<void>`), in which case an exception or cancellation passes
  /// through to the returned future without calling `f`, or the whole ready
  /// `future<T>&&`, in which case `f` sees every outcome. `f` runs on the
  /// completing thread. Consumes this future: `valid()` is false afterwards.
  /// Cancelling the returned future also cancels this one (so queued work
  /// that only fed the continuation never runs), unless it already finished.
  template <class F>
  auto then(F&& f);

 private:
  template <class>
  friend class promise;
  template <class>
  friend class future;
  friend struct detail::future_access;

  explicit future(detail::state_ref<detail::shared_state<T>> state) noexcept : m_state(std::move(state)) {}

  detail::shared_state<T>& state() const {
    if (!m_state) {
      throw future_error(future_errc::no_state);
    }
    return *m_state.get();
  }

  detail::state_ref<detail::shared_state<T>> m_state;
};

namespace detail {
/// What `promise<T>::set_value` takes as a braced list: `T`, or for `void` a
/// type nobody can name (there is no value to give).
struct no_value_param {
  no_value_param() = delete;
};
template <class T>
using value_param_t = std::conditional_t<std::is_void_v<T>, no_value_param, T>;
} // namespace detail

/// The producer's end: gives one result to the matching future.
///
/// Thread-safety: see the file comment. Lifetime: destroying a promise that
/// has no result completes its future with `future_errc::broken_promise`.
template <class T>
class promise {
 public:
  /// A promise with a fresh shared state.
  promise() : m_state(new detail::shared_state<T>()) {}
  promise(promise&& other) noexcept = default;
  promise& operator=(promise&& other) noexcept {
    if (this != &other) {
      abandon();
      m_state = std::move(other.m_state);
      m_satisfied = other.m_satisfied;
      m_future_taken = other.m_future_taken;
    }
    return *this;
  }
  promise(const promise&) = delete;
  promise& operator=(const promise&) = delete;
  ~promise() { abandon(); }

  /// The future for this promise. Callable once.
  future<T> get_future() {
    auto& s = state();
    if (std::exchange(m_future_taken, true)) {
      throw future_error(future_errc::future_already_retrieved);
    }
    s.add_ref();
    return future<T>(detail::state_ref<detail::shared_state<T>>(&s));
  }

  /// Completes the future with a value built from `args`. Throws
  /// `promise_already_satisfied` if this promise already gave a result; does
  /// nothing if the consumer cancelled the future first.
  template <class... Args>
  void set_value(Args&&... args) {
    auto& s = begin_result();
    if (!s.claim()) {
      return;
    }
    try {
      s.emplace_value(std::forward<Args>(args)...);
    } catch (...) {
      s.store_error(std::current_exception());
    }
    s.publish(false);
  }

  /// The same from a braced list, as std::promise allows: `p.set_value({1, "one"})`.
  /// (Not a template, so an rvalue `T` comes here too, and is moved in.)
  void set_value(detail::value_param_t<T>&& value) { set_value<detail::value_param_t<T>>(std::move(value)); }

  /// Completes the future with an exception (null is a clear error, not a value).
  void set_exception(std::exception_ptr error) {
    if (!error) {
      throw simul::error("promise::set_exception: the exception_ptr is null");
    }
    auto& s = begin_result();
    if (s.claim()) {
      s.store_error(std::move(error));
      s.publish(false);
    }
  }

  /// Completes the future as cancelled (its `get()` throws `cancelled_error`).
  void set_cancelled(const std::string& message = "task was cancelled") {
    auto& s = begin_result();
    if (s.claim()) {
      s.store_error(std::make_exception_ptr(cancelled_error(message)));
      s.publish(true);
    }
  }

  /// Call before starting the work: false means the consumer cancelled it and
  /// the work must not run (the future is already complete).
  /// concurrent.futures' Future.set_running_or_notify_cancel.
  bool set_running_or_notify_cancel() { return state().set_running(); }

  /// True if the future was cancelled by its consumer.
  [[nodiscard]] bool cancelled() const { return state().cancelled(); }

  /// Lets `future::cancel()` reach work that has already started: `hook()` is
  /// called (from the cancelling thread, possibly from several at once) when
  /// the future is cancelled after `set_running_or_notify_cancel()`, and returns
  /// whether the request was accepted. At most one hook per promise.
  template <class F>
  requires(std::is_invocable_r_v<bool, std::decay_t<F>&>) void set_cancel_hook(F&& hook) {
    state().set_cancel_hook(std::forward<F>(hook));
  }

  /// True if this promise refers to a shared state.
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(m_state); }

 private:
  detail::shared_state<T>& state() const {
    if (!m_state) {
      throw future_error(future_errc::no_state);
    }
    return *m_state.get();
  }

  detail::shared_state<T>& begin_result() {
    auto& s = state();
    if (std::exchange(m_satisfied, true)) {
      throw future_error(future_errc::promise_already_satisfied);
    }
    return s;
  }

  void abandon() noexcept {
    if (m_state && !m_satisfied && m_state->claim()) {
      m_state->store_error(std::make_exception_ptr(future_error(future_errc::broken_promise)));
      m_state->publish(false);
    }
  }

  detail::state_ref<detail::shared_state<T>> m_state;
  bool m_satisfied = false;
  bool m_future_taken = false;
};

/// A future that is ready with `value`.
template <class T>
future<std::decay_t<T>> make_ready_future(T&& value) {
  promise<std::decay_t<T>> p;
  auto f = p.get_future();
  p.set_value(std::forward<T>(value));
  return f;
}

/// A ready `future<void>`.
inline future<void> make_ready_future() {
  promise<void> p;
  auto f = p.get_future();
  p.set_value();
  return f;
}

/// A future that is ready with `error`.
template <class T>
future<T> make_exceptional_future(std::exception_ptr error) {
  promise<T> p;
  auto f = p.get_future();
  p.set_exception(std::move(error));
  return f;
}

namespace detail {

/// Runs `f(args...)` and gives its outcome to `p`.
template <class T, class F, class... Args>
void fulfil(promise<T>& p, F&& f, Args&&... args) noexcept {
  try {
    if constexpr (std::is_void_v<T>) {
      std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
      p.set_value();
    } else {
      p.set_value(std::invoke(std::forward<F>(f), std::forward<Args>(args)...));
    }
  } catch (...) {
    p.set_exception(std::current_exception());
  }
}

template <class T, class F>
struct then_traits {
  static constexpr bool takes_future = std::is_invocable_v<F&, future<T>&&>;
  static auto deduce() {
    if constexpr (takes_future) {
      return std::type_identity<std::invoke_result_t<F&, future<T>&&>>{};
    } else if constexpr (std::is_void_v<T>) {
      return std::type_identity<std::invoke_result_t<F&>>{};
    } else {
      return std::type_identity<std::invoke_result_t<F&, T&&>>{};
    }
  }
  using result = typename decltype(deduce())::type;
};

} // namespace detail

template <class T>
template <class F>
auto future<T>::then(F&& f) {
  using fn_t = std::decay_t<F>;
  using traits = detail::then_traits<T, fn_t>;
  using U = typename traits::result;
  promise<U> next;
  auto result = next.get_future();
  auto source = std::move(m_state);
  if (!source) {
    throw future_error(future_errc::no_state);
  }
  auto* raw = source.get();
  // Cancelling the continuation's future passes the request upstream: work
  // that has not started never runs (a finished source ignores it).
  result.state().add_callback([upstream = source](detail::state_base& downstream) {
    if (downstream.cancelled()) {
      upstream->request_cancel();
    }
  });
  raw->add_callback(
      [next = std::move(next), source = std::move(source), fn = fn_t(std::forward<F>(f))](detail::state_base&) mutable {
        if (!next.set_running_or_notify_cancel()) {
          return;
        }
        future<T> ready(std::move(source));
        if constexpr (traits::takes_future) {
          detail::fulfil(next, fn, std::move(ready));
        } else if (ready.cancelled()) {
          next.set_cancelled("the future this continuation depends on was cancelled");
        } else if (auto error = ready.exception()) {
          next.set_exception(std::move(error));
        } else if constexpr (std::is_void_v<T>) {
          detail::fulfil(next, fn);
        } else {
          detail::fulfil(next, fn, ready.get());
        }
      });
  return result;
}

} // namespace simul
