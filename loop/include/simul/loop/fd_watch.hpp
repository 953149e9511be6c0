#pragma once

// Descriptors of other libraries on the loop (asyncio's add_reader).
//
// A C library with its own sockets (libcurl, libpq, c-ares, an MPI progress
// descriptor) joins the loop by telling it which descriptors to watch:
//
//   loop.add_reader(fd, callback)    callback() whenever fd is readable
//   loop.add_writer(fd, callback)    callback() whenever fd is writable
//   loop.remove_reader(fd)           true if a reader was registered
//   loop.remove_writer(fd)
//
// with asyncio's rules: one reader and one writer per descriptor, a second
// call replaces the first; the watch is level-triggered (the callback runs on
// every iteration while the condition holds); an error on the descriptor runs
// both callbacks, which find it when they read or write; the descriptor is
// made non-blocking. The program keeps owning the descriptor: remove the
// watches before closing it.
//
// Coroutines wait for one event with `co_await simul::wait_readable(fd)` /
// `wait_writable(fd)`: the awaitable is the descriptor's reader (or writer)
// while it waits, so it throws `simul::error` if another one is registered.
//
// Thread-safety: loop thread only; from another thread while the loop runs
// every call throws `simul::error`. Callbacks run on the loop's thread; an
// exception escaping one goes to the loop's exception handler. Lifetime: the
// watches end with `remove_*` or with the loop's `close()`; an awaitable
// lives in the awaiting frame and removes its watch when the task is
// cancelled or its frame destroyed.

#include <simul/loop/detail/task_base.hpp>
#include <simul/loop/event_loop.hpp>

#include <coroutine>
#include <exception>

namespace simul {

namespace detail {

/// The awaitable of wait_readable / wait_writable.
class fd_wait_awaiter final : public waiter {
 public:
  fd_wait_awaiter(int fd, bool writable) noexcept : m_fd(fd), m_writable(writable) {}
  fd_wait_awaiter(const fd_wait_awaiter&) = delete;
  fd_wait_awaiter& operator=(const fd_wait_awaiter&) = delete;
  ~fd_wait_awaiter();

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h);
  void await_resume();
  bool on_cancel() noexcept override;

 private:
  void unregister() noexcept;

  int m_fd;
  bool m_writable;
  bool m_registered = false;
  event_loop* m_loop = nullptr;
  std::exception_ptr m_error;
};

} // namespace detail

/// Suspends the current task until `fd` is readable (or in error).
/// Throws `simul::error` if `fd` already has a reader, `simul::io_error` if
/// it cannot be polled, `cancelled_error` if the task is cancelled meanwhile.
/// Thread-safety: loop thread, inside a task.
[[nodiscard]] inline detail::fd_wait_awaiter wait_readable(int fd) noexcept { return {fd, false}; }

/// Suspends the current task until `fd` is writable (or in error); as `wait_readable`.
[[nodiscard]] inline detail::fd_wait_awaiter wait_writable(int fd) noexcept { return {fd, true}; }

} // namespace simul
