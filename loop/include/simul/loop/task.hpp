#pragma once

// simul::task<T>: the return type of a coroutine that runs on an event loop.
//
// A task is lazy, like a Python coroutine object: calling the coroutine
// function makes the frame and runs nothing. `co_await t` runs it inside the
// awaiting task and gives back its value (or rethrows its exception), with no
// trip through the loop; `create_task(t)` schedules it as a task of its own;
// `run(t)` runs it on a fresh loop. A task is awaited or scheduled once.
//
// Arguments: a coroutine's parameters live in its frame, which outlives the
// call that made it. Take parameters by value; a reference or a view
// parameter bound to a temporary dangles once the caller's expression ends.
// Tasks with `std::string_view` parameters do not compile (checked in the
// std::coroutine_traits specialization at the end of this file).
//
// Thread-safety: a task is used by one thread, the loop's. Lifetime: the task
// object owns its frame until it is awaited to the end or handed to
// `create_task`; destroying a task that never ran destroys the frame (and, in
// debug mode, reports a coroutine that was never awaited).

#include <simul/loop/detail/frame_pool.hpp>
#include <simul/loop/detail/task_base.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

namespace simul {

template <class T = void>
class task;

namespace detail {

/// Debug mode: reports an unstarted coroutine destroyed; `where` is the
/// coroutine function's own location (see task_promise_base).
void report_never_awaited(const source_location& where) noexcept;

template <class Arg>
inline constexpr bool safe_task_parameter = !std::is_same_v<std::remove_cvref_t<Arg>, std::string_view>;

class task_promise_base {
 public:
  // The promise is built with no arguments (the derived promises default the
  // location), so the compiler evaluates the location inside the coroutine
  // itself: GCC gives the coroutine function's name and file (the line of its
  // closing brace). It names a coroutine that is never awaited.
  explicit task_promise_base(source_location where) noexcept : m_where(where) {}

  // Frames come from the loop's small-block pool (detail/frame_pool.hpp).
  static void* operator new(std::size_t size) { return pool_allocate(size); }
  static void operator delete(void* frame, std::size_t size) noexcept { pool_deallocate(frame, size); }

  std::suspend_always initial_suspend() noexcept { return {}; }

  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      auto& p = h.promise();
      if (p.m_continuation) {
        return p.m_continuation;
      }
      if (p.m_root != nullptr) {
        // Finishing the task may destroy this frame: touch nothing after.
        root_finished(*p.m_root);
      }
      return std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { m_error = std::current_exception(); }

  std::coroutine_handle<> m_continuation;
  task_base* m_root = nullptr;
  std::exception_ptr m_error;
  source_location m_where;

 private:
  static void root_finished(task_base& t) noexcept;
};

template <class T>
class task_promise : public task_promise_base {
 public:
  // Defaulted here, not in the base: evaluated where the coroutine builds it.
  task_promise(source_location where = source_location::current()) noexcept // NOLINT: implicit
      : task_promise_base(where) {}
  task<T> get_return_object() noexcept;
  template <class U>
  requires std::is_constructible_v<T, U&&>
  void return_value(U&& value) { m_value.emplace(std::forward<U>(value)); }
  T take() {
    if (m_error) {
      std::rethrow_exception(m_error);
    }
    return std::move(*m_value);
  }
  std::optional<T> m_value;
};

template <>
class task_promise<void> : public task_promise_base {
 public:
  task_promise(source_location where = source_location::current()) noexcept // NOLINT: implicit
      : task_promise_base(where) {}
  task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() {
    if (m_error) {
      std::rethrow_exception(m_error);
    }
  }
};

} // namespace detail

/// A lazy coroutine. See the file comment.
///
/// Thread-safety: loop thread only. Lifetime: owns its frame; move-only.
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using value_type = T;

  task() noexcept = default;
  task(task&& other) noexcept : m_handle(std::exchange(other.m_handle, nullptr)) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      reset();
      m_handle = std::exchange(other.m_handle, nullptr);
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() { reset(); }

  /// True if the task holds a coroutine that has not been handed on.
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(m_handle); }

  struct awaiter {
    std::coroutine_handle<promise_type> m_handle;
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
      m_handle.promise().m_continuation = caller;
      return m_handle;
    }
    T await_resume() { return m_handle.promise().take(); }
  };

  /// Runs the coroutine inside the awaiting task; gives its value or rethrows.
  /// Throws `simul::error` if the task is empty or was already started.
  awaiter operator co_await() && { return awaiter{start_checked()}; }
  awaiter operator co_await() & { return awaiter{start_checked()}; }

  /// Hands the frame over (used by create_task). Internal.
  std::coroutine_handle<promise_type> release() noexcept { return std::exchange(m_handle, nullptr); }

 private:
  friend class detail::task_promise<T>;
  explicit task(std::coroutine_handle<promise_type> h) noexcept : m_handle(h) {}

  std::coroutine_handle<promise_type> start_checked() {
    if (!m_handle) {
      throw error("simul::task: co_await on an empty task (moved from, or already handed to create_task)");
    }
    if (m_started) {
      throw error("simul::task: a task can be awaited only once");
    }
    m_started = true;
    return m_handle;
  }

  void reset() noexcept {
    if (m_handle) {
      if (!m_started) {
        detail::report_never_awaited(m_handle.promise().m_where);
      }
      m_handle.destroy();
      m_handle = nullptr;
    }
  }

  std::coroutine_handle<promise_type> m_handle;
  bool m_started = false;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}
} // namespace detail

} // namespace simul

/// Every coroutine returning simul::task: the parameter check (the declared
/// parameter types, `this` included for member coroutines), then the promise.
template <class T, class... Args>
struct std::coroutine_traits<simul::task<T>, Args...> {
  static_assert((simul::detail::safe_task_parameter<Args> && ...),
                "simul::task: take coroutine parameters by value; a std::string_view parameter "
                "dangles once the caller's expression ends (use std::string)");
  using promise_type = simul::detail::task_promise<T>;
};
