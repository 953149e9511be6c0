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
#include <cstdint>
#include <exception>
#include <new>
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

template <class T>
class task_promise;

// ---- One block per scheduled task ----
//
// A task<T> frame is allocated with room in front of it for the task_state<T>
// that create_task may build there, so a scheduled task is one block from the
// pool, not two:
//
//   [ task_state<T> | pad | frame_header ][ coroutine frame ... ]
//   ^ block                                ^ what the promise's operator new returns
//
// A frame that is only awaited never touches the room. Once create_task built
// the state there, the state owns the block: destroying the frame (when the
// task completes, so its parameters go then, as before) leaves the memory,
// and the state frees the whole block when its last reference goes.

/// Written by the promise's operator new just in front of the frame.
struct frame_header {
  static constexpr std::uint16_t k_magic = 0x534d; // tells a simul::task frame
  std::uint32_t frame_size;
  std::uint16_t magic;
  bool owned_by_state; // the task state frees the block, not the frame
};

inline frame_header& header_of(void* frame) noexcept {
  return *reinterpret_cast<frame_header*>(static_cast<char*>(frame) - sizeof(frame_header));
}

/// A frame of `size` bytes with `prefix` bytes (a multiple of 16) in front.
inline void* frame_allocate(std::size_t size, std::size_t prefix) {
  if (size > UINT32_MAX) {
    throw std::bad_alloc();
  }
  char* frame = static_cast<char*>(pool_allocate(prefix + size)) + prefix;
  ::new (frame - sizeof(frame_header)) frame_header{static_cast<std::uint32_t>(size), frame_header::k_magic, false};
  return frame;
}

inline void frame_deallocate(void* frame, std::size_t size, std::size_t prefix) noexcept {
  if (header_of(frame).owned_by_state) {
    return; // the task state in front frees the block when it goes
  }
  pool_deallocate(static_cast<char*>(frame) - prefix, prefix + size);
}

/// A scheduled task of result type T: the loop's task_base, the frame and,
/// once the task finished, its value. Lives in the room in front of its frame.
template <class T>
class task_state final : public task_base {
 public:
  /// Builds the state in front of `frame` (a frame of a task<T> not started)
  /// and schedules its first step (unless `eager`: then the caller runs it
  /// with `run_first_step_now()`). Throws `simul::error` if `frame` was not
  /// allocated by task<T>'s promise, and whatever scheduling throws (the frame
  /// is destroyed then).
  static task_state* adopt(event_loop& loop, std::coroutine_handle<task_promise<T>> frame, bool eager = false);

  /// The value; requires a finished task. Copies if it can, else moves out
  /// (defined in task_handle.hpp, with invalid_state_error).
  T value();
  /// The value moved out; requires a finished task that nobody can read
  /// again (see detail::take_result).
  T take_value() { return std::move(*m_value); }

 private:
  task_state(event_loop& loop, std::coroutine_handle<task_promise<T>> frame) noexcept
      : task_base(loop), m_frame(frame) {}
  ~task_state() override = default;

  std::exception_ptr take_result_and_destroy_frame() noexcept override;
  void destroy_frame() noexcept override {
    if (m_frame) {
      std::exchange(m_frame, nullptr).destroy();
    }
  }
  void destroy_self() noexcept override;

  std::coroutine_handle<task_promise<T>> m_frame;
  struct empty {};
  [[no_unique_address]] std::conditional_t<std::is_void_v<T>, empty, std::optional<T>> m_value;
};

/// The room in front of a task<T> frame: the state, then the header, rounded to 16.
template <class T>
inline constexpr std::size_t frame_prefix = (sizeof(task_state<T>) + sizeof(frame_header) + 15) / 16 * 16;

class task_promise_base {
 public:
  // The promise is built with no arguments (the derived promises default the
  // location), so the compiler evaluates the location inside the coroutine
  // itself: GCC gives the coroutine function's name and file (the line of its
  // closing brace). It names a coroutine that is never awaited.
  explicit task_promise_base(source_location where) noexcept : m_where(where) {}

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
  // Frames come from the loop's small-block pool (detail/frame_pool.hpp), with
  // room in front for a task state (see frame_header).
  static void* operator new(std::size_t size) { return frame_allocate(size, frame_prefix<T>); }
  static void operator delete(void* frame, std::size_t size) noexcept {
    frame_deallocate(frame, size, frame_prefix<T>);
  }
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
  static void* operator new(std::size_t size) { return frame_allocate(size, frame_prefix<void>); }
  static void operator delete(void* frame, std::size_t size) noexcept {
    frame_deallocate(frame, size, frame_prefix<void>);
  }
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

  /// The coroutine function's own place, as the compiler names it (GCC: its
  /// file, the line of its closing brace, its name); empty for an empty task.
  [[nodiscard]] detail::source_location where() const noexcept {
    return m_handle ? m_handle.promise().m_where : detail::source_location{};
  }

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

template <class T>
task_state<T>* task_state<T>::adopt(event_loop& loop, std::coroutine_handle<task_promise<T>> frame, bool eager) {
  static_assert(alignof(task_state<T>) <= 16, "simul::task: a result type aligned to more than 16 bytes");
  auto& header = header_of(frame.address());
  if (header.magic != frame_header::k_magic || header.owned_by_state) {
    throw simul::error("create_task: the coroutine frame was not allocated by simul::task's promise");
  }
  auto* state = ::new (static_cast<char*>(frame.address()) - frame_prefix<T>) task_state(loop, frame);
  header.owned_by_state = true;
  frame.promise().m_root = state;
  try {
    state->start(frame, eager);
  } catch (...) {
    state->destroy_self();
    throw;
  }
  return state;
}

template <class T>
std::exception_ptr task_state<T>::take_result_and_destroy_frame() noexcept {
  auto& p = m_frame.promise();
  auto error = p.m_error;
  if constexpr (!std::is_void_v<T>) {
    if (!error) {
      try {
        m_value.emplace(std::move(*p.m_value));
      } catch (...) {
        error = std::current_exception();
      }
    }
  }
  destroy_frame();
  return error;
}

template <class T>
void task_state<T>::destroy_self() noexcept {
  destroy_frame(); // the block stays: the state owns it
  char* block = reinterpret_cast<char*>(this);
  const std::size_t bytes = frame_prefix<T> + header_of(block + frame_prefix<T>).frame_size;
  this->~task_state();
  pool_deallocate(block, bytes);
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
