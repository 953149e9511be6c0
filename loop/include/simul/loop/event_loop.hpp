#pragma once

// simul::event_loop: an asyncio-style event loop on libuv.
//
// The loop runs callbacks and steps coroutine tasks on one thread, the thread
// that runs it. Like asyncio's loop it has a ready queue of callbacks, a heap
// of timers and an I/O poller (libuv's); one iteration (`run_once()`) runs the
// timers that are due, polls for I/O (without blocking if callbacks are ready)
// and runs every callback that was ready when the iteration began. Callbacks
// scheduled while an iteration runs wait for the next one, so a task that
// yields in a loop never starves the others.
//
// Contract:
// - One loop runs per thread at a time; `get_running_loop()` finds it. A loop
//   may be run from different threads one after the other, never at once.
// - Everything but `call_soon_threadsafe`, `submit` and `stop` belongs to the
//   loop's thread (or to any thread while the loop is not running). With
//   `set_debug(true)` (or `SIMUL_DEBUG=1` in the environment) calling a
//   loop-only function from another thread while it runs throws
//   `simul::error`.
// - Errors are never silent: an exception escaping a callback, or a task's
//   exception that nobody retrieved, goes to the exception handler (stderr by
//   default).
// - `close()` cancels the tasks still pending and lets them unwind, closes
//   every handle and frees libuv's loop; the destructor closes too.
//
// libuv stays private: this header never includes <uv.h>.

#include <simul/core/detail/unique_function.hpp>
#include <simul/core/error.hpp>
#include <simul/core/executor.hpp>
#include <simul/core/future.hpp>
#include <simul/loop/detail/context.hpp>
#include <simul/loop/detail/task_base.hpp>
#include <simul/loop/errors.hpp>
#include <simul/loop/task.hpp>
#include <simul/loop/task_handle.hpp>

#include <chrono>
#include <concepts>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace simul {

/// What the exception handler is told (asyncio's context dict).
struct exception_context {
  std::string message;          ///< what happened, in a sentence
  std::exception_ptr exception; ///< the exception, when there is one
  std::string task;             ///< the task's name, when a task is involved
  /// Where the task or callback involved was created, "file:line (function)"
  /// (from `create_task` / `call_soon`...'s call site), when known. For a
  /// coroutine never awaited, the coroutine function's name when it can be
  /// found (see docs/loop.md), else its code address.
  std::string where;
};

class event_loop;

/// Called with every error the loop cannot hand to anyone else.
using exception_handler = std::function<void(event_loop&, const exception_context&)>;

namespace detail {
struct loop_impl;
struct loop_access;
struct run_access;
struct callback_node;
void callback_node_release(callback_node* node) noexcept;
} // namespace detail

/// A scheduled callback (asyncio.Handle / TimerHandle): lets its owner cancel it.
///
/// Thread-safety: loop thread only. Lifetime: the handle may outlive the
/// callback and the loop's iteration; it must not outlive the loop.
class handle {
 public:
  handle() noexcept = default;
  handle(const handle& other) noexcept;
  handle& operator=(const handle& other) noexcept;
  handle(handle&& other) noexcept : m_node(std::exchange(other.m_node, nullptr)) {}
  handle& operator=(handle&& other) noexcept;
  ~handle() {
    if (m_node != nullptr) {
      detail::callback_node_release(m_node);
    }
  }

  /// Cancels the callback: it will not run if it has not run yet. Idempotent.
  void cancel() noexcept;
  /// True once `cancel()` was called.
  [[nodiscard]] bool cancelled() const noexcept;
  /// When a timer callback is due (`call_later` / `call_at`); the epoch otherwise.
  [[nodiscard]] std::chrono::steady_clock::time_point when() const noexcept;
  /// True if the handle refers to a callback.
  explicit operator bool() const noexcept { return m_node != nullptr; }

 private:
  friend class event_loop;
  explicit handle(detail::callback_node* node) noexcept : m_node(node) {}
  detail::callback_node* m_node = nullptr;
};

/// The event loop. See the file comment.
///
/// Thread-safety: see the file comment. Lifetime: not movable; tasks, handles
/// and awaitables bound to a loop must not outlive it.
class event_loop {
 public:
  using clock = std::chrono::steady_clock;

  /// A new loop, not running. Reads `SIMUL_DEBUG` (debug mode) and
  /// `SIMUL_EAGER_TASKS` (eager tasks) from the environment.
  event_loop();
  /// Closes the loop if it is not closed yet.
  ~event_loop();
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  /// Runs until `stop()` is called (asyncio's run_forever).
  /// Throws `simul::error` if this or another loop is already running on this thread.
  void run();

  /// Schedules `t` as a task, runs until it is done and returns its result
  /// (or rethrows its exception). Throws `simul::error` if `stop()` ended
  /// the run first. `where` (leave it out) is the call site, named in reports.
  template <class T>
  T run_until_complete(task<T> t, detail::source_location where = detail::source_location::current());
  /// Runs until the already scheduled task `t` is done; returns its result.
  template <class T>
  T run_until_complete(task_handle<T> t);

  /// Runs one iteration: due timers, one poll for I/O (blocking until
  /// something happens if no callback is ready), then the ready callbacks.
  /// Returns true while the loop has something pending (tasks, timers, callbacks).
  bool run_once();
  /// Runs one iteration without blocking; for embedding in a host loop.
  bool run_nowait();
  /// The poll file descriptor of the backend (epoll): readable when
  /// `run_nowait()` has work to do. For embedding in a host loop.
  [[nodiscard]] int backend_fd() const;
  /// How long a host may block on `backend_fd()` before calling `run_nowait()`,
  /// in milliseconds; -1 means until the descriptor is readable; 0 means now.
  [[nodiscard]] int backend_timeout() const;

  /// Makes `run()` return after the current iteration. Safe from any thread.
  void stop();
  /// Cancels pending tasks and lets them unwind, closes every handle, frees
  /// the loop. Idempotent. Throws `simul::error` while the loop is running.
  void close();
  [[nodiscard]] bool is_closed() const noexcept;
  [[nodiscard]] bool is_running() const noexcept;

  /// The loop's clock (monotonic).
  [[nodiscard]] clock::time_point time() const noexcept { return clock::now(); }

  // Every scheduling call takes the caller's `detail::source_location` (a
  // defaulted last argument: leave it out). It is kept with the callback or
  // task (a pointer copy) and named in the reports about it.

  /// Runs `f()` on the next iteration, after the callbacks already scheduled.
  /// Exceptions from `f` go to the exception handler.
  template <class F>
  requires(std::invocable<std::decay_t<F>&>) handle
      call_soon(F&& f, detail::source_location where = detail::source_location::current()) {
    return schedule_callback(detail::unique_function<void()>(std::forward<F>(f)), nullptr, where);
  }

  /// Runs `f()` once `delay` has passed (at least that long from now).
  template <class Rep, class Period, class F>
  requires(std::invocable<std::decay_t<F>&>) handle
      call_later(std::chrono::duration<Rep, Period> delay, F&& f,
                 detail::source_location where = detail::source_location::current()) {
    return call_at(detail::deadline_after(delay), std::forward<F>(f), where); // saturates
  }

  /// Runs `f()` at `when` on the loop's clock.
  template <class F>
  requires(std::invocable<std::decay_t<F>&>) handle
      call_at(clock::time_point when, F&& f, detail::source_location where = detail::source_location::current()) {
    return schedule_callback(detail::unique_function<void()>(std::forward<F>(f)), &when, where);
  }

  /// Runs `f()` on the loop's thread soon; the only scheduling call safe from
  /// any thread. Calls from other threads are batched through one wake-up.
  /// Throws `simul::error` once the loop is closed.
  template <class F>
  requires(std::invocable<std::decay_t<F>&>) void call_soon_threadsafe(
      F&& f, detail::source_location where = detail::source_location::current()) {
    post_threadsafe(detail::unique_function<void()>(std::forward<F>(f)), where);
  }

  /// Schedules `t` as a task of this loop; asyncio's loop.create_task.
  /// `options` names it and may start it eagerly (`{.eager = true}`: its
  /// first step runs now, inside this call; see create_task_options). Throws
  /// `simul::error` on a closed loop or for an empty task.
  template <class T>
  task_handle<T> create_task(task<T> t, create_task_options options = {},
                             detail::source_location where = detail::source_location::current());
  /// As above, with a name (`loop.create_task(t, "fetch")`).
  template <class T, std::convertible_to<std::string> Name>
  task_handle<T> create_task(task<T> t, Name&& name,
                             detail::source_location where = detail::source_location::current());

  /// Eager tasks for the whole loop (Python 3.12's eager_task_factory):
  /// `create_task` without an `eager` option runs the task's first step at
  /// once while this loop runs on the calling thread. Off by default
  /// (`SIMUL_EAGER_TASKS=1` in the environment turns it on for new loops).
  void set_eager_tasks(bool enabled) noexcept;
  [[nodiscard]] bool get_eager_tasks() const noexcept;

  /// simul::executor: runs `f(args...)` on the loop's thread and returns a
  /// future of its result. Safe from any thread; throws `broken_executor`
  /// after `shutdown()` or `close()`.
  template <class F, class... Args>
  requires std::invocable<std::decay_t<F>, std::decay_t<Args>...> future<submit_result_t<F, Args...>>
  submit(F&& f, Args&&... args);

  /// Stops accepting `submit`s. The options are accepted for the executor
  /// concept; pending submitted work still runs while the loop runs.
  void shutdown(shutdown_options = {}) noexcept;

  /// Runs `f(args...)` on executor `ex` and returns its future, which a task
  /// may `co_await` (it resumes on this loop's thread).
  template <class E, class F, class... Args>
  auto run_in_executor(E& ex, F&& f, Args&&... args) {
    return ex.submit(detail::with_current_context(std::forward<F>(f)),
                     std::forward<Args>(args)...); // context_var values go along
  }

  // Descriptors of other libraries on the loop (asyncio's add_reader), in
  // fd_watch.cpp; see <simul/loop/fd_watch.hpp>. Loop thread only: from
  // another thread while the loop runs they throw `simul::error`.

  /// Calls `callback()` on the loop's thread whenever `fd` is readable (or in
  /// error), until `remove_reader(fd)`. One reader per descriptor: a second
  /// call replaces the first. Throws `simul::io_error` for a descriptor the
  /// system cannot poll (closed, a regular file), `simul::error` on a closed
  /// loop or for an empty callback. Exceptions from `callback` go to the
  /// exception handler.
  void add_reader(int fd, std::function<void()> callback);
  /// As `add_reader`, for writability.
  void add_writer(int fd, std::function<void()> callback);
  /// Stops watching `fd` for reading; true if a reader was registered.
  bool remove_reader(int fd);
  /// Stops watching `fd` for writing; true if a writer was registered.
  bool remove_writer(int fd);

  /// Replaces the exception handler (an empty one restores the default).
  void set_exception_handler(exception_handler handler);
  /// Reports `context` through the handler; a handler that throws is reported to stderr.
  void call_exception_handler(const exception_context& context) noexcept;
  /// The default handler: one line to stderr.
  static void default_exception_handler(event_loop& loop, const exception_context& context);

  /// Debug mode: reports slow callbacks (over 100 ms) with where they were
  /// scheduled, coroutines never awaited, handles left open at close and
  /// loop-only calls from other threads. (Failed tasks nobody looked at and
  /// tasks destroyed while pending are reported in every mode.)
  void set_debug(bool enabled) noexcept;
  [[nodiscard]] bool get_debug() const noexcept;
  /// How long a callback may run in debug mode before it is reported.
  void set_slow_callback_duration(std::chrono::nanoseconds limit) noexcept;

 private:
  friend struct detail::loop_access; // simul's own sources reach the private state through it
  friend struct detail::run_access;  // simul::run (impl/event_loop.hpp)
  handle schedule_callback(detail::unique_function<void()> f, const clock::time_point* when,
                           const detail::source_location& where);
  void post_threadsafe(detail::unique_function<void()> f, const detail::source_location& where);
  void post_submitted(detail::unique_function<void()> f);
  void check_can_schedule(const char* what) const;
  /// Whether create_task with this `eager` option starts the task now.
  [[nodiscard]] bool starts_eagerly(std::optional<bool> eager) const noexcept;
  void run_until_task_done(detail::task_base& t);

  std::unique_ptr<detail::loop_impl> m_impl;
};

/// The loop running on this thread (asyncio.get_running_loop).
/// Throws `simul::error` if no loop is running here.
event_loop& get_running_loop();

/// Schedules `t` on the running loop (asyncio.create_task).
/// Throws `simul::error` if no loop is running on this thread.
/// `where` (leave it out) is the call site, named in reports about the task.
template <class T>
task_handle<T> create_task(task<T> t, create_task_options options = {},
                           detail::source_location where = detail::source_location::current());
/// As above, with a name (`create_task(t, "fetch")`).
template <class T, std::convertible_to<std::string> Name>
task_handle<T> create_task(task<T> t, Name&& name, detail::source_location where = detail::source_location::current());

/// Runs `main` on a new loop until it completes, then cancels what is left,
/// closes the loop and returns `main`'s result (asyncio.run).
/// Throws `simul::error` if a loop is already running on this thread.
template <class T>
T run(task<T> main, bool debug = false, detail::source_location where = detail::source_location::current());

} // namespace simul

// Definitions that need both the loop and task handles (create_task, run,
// submit...): after the declarations above, as Asio does.
#include <simul/loop/impl/event_loop.hpp>
