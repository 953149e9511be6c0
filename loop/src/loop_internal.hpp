#pragma once

// The loop's private state, and how simul's own sources reach libuv.
//
// This header is private (loop/src): public headers never see <uv.h>. It is
// the internal API other parts of the loop module (I/O: streams, DNS, UDP,
// subprocesses, signals, files) build on, and it stays stable:
//
//   uv_loop_t* detail::uv_loop(event_loop&)   the libuv loop
//   detail::loop_impl& detail::impl_of(loop)   the rest of the state
//   detail::loop_schedule(loop, item)          run item on the next iteration
//   detail::report(loop, message, eptr, task)  never-silent error reporting
//   detail::close_and_delete(h)                uv_close, then delete from the close callback
//
// ## Writing a cancellable awaitable over a libuv request or handle
//
// An awaitable that suspends a task derives from `detail::waiter`
// (<simul/loop/detail/task_base.hpp>) and lives in the awaiting frame, so it
// needs no allocation and stays put while the task is suspended:
//
//   class read_awaiter final : public detail::waiter {
//    public:
//     bool await_ready() { return data_already_buffered(); }
//     bool await_suspend(std::coroutine_handle<> h) {
//       if (!suspend_on(h)) return false;   // a cancellation is pending: don't start
//       m_req.data = this;                  // libuv callbacks find the awaiter
//       int rc = uv_xxx_start(..., &on_done);
//       if (rc < 0) { m_status = rc; wake(); } // fail through await_resume, not here
//       return true;
//     }
//     // The task is cancelled while suspended here.
//     bool on_cancel() noexcept override {
//       // Either stop the operation synchronously and wake now:
//       //   uv_xxx_stop(...); abort_and_wake(); return true;
//       // or ask libuv to cancel and wake from the callback (uv_cancel on a
//       // fs/getaddrinfo/work request reports UV_ECANCELED there):
//       //   m_aborted = true; uv_cancel(req); return true;
//       // Return false if the result is already on its way (wake() called).
//     }
//     Result await_resume() {
//       check_cancel();                     // throws cancelled_error if aborted/pending
//       if (m_status < 0) throw_uv_error(m_status);
//       return std::move(m_result);
//     }
//    private:
//     static void on_done(uv_xxx_t* req, int status) {
//       auto* self = static_cast<read_awaiter*>(req->data);
//       self->m_status = status;
//       self->wake();                       // schedules the task's next step
//     }
//   };
//
// Rules:
// - Call `wake()` exactly once per suspension (or `abort_and_wake()`), from
//   the loop thread; it only schedules, the task resumes on the next
//   iteration, never inside the libuv callback.
// - Handles (uv_tcp_t, uv_pipe_t, uv_udp_t, uv_process_t, uv_signal_t...)
//   outlive frames: allocate them on the heap, owned by the public object
//   (stream, server...), and free them only from the close callback
//   (`close_and_delete`). A frame destroyed while suspended (loop closing) runs the
//   awaiter's destructor: it must detach itself (req->data = nullptr, stop the
//   handle) so no callback reaches freed memory.
// - The loop's `close()` cancels pending tasks first, then closes every handle
//   left open (reported in debug mode), then runs libuv until the close
//   callbacks ran.

#include "ready_queue.hpp"
#include "timer_heap.hpp"

#include <simul/loop/detail/loop_local.hpp>
#include <simul/loop/event_loop.hpp>

#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

namespace simul::detail {

/// A callback scheduled by call_soon / call_later (the node behind `handle`).
struct callback_node {
  std::uint32_t refs = 1;
  bool cancelled = false;
  bool done = false;
  event_loop* loop = nullptr;
  unique_function<void()> fn;
  timer_entry timer;
  source_location where; // the call_soon / call_later / call_at call site
};

/// A callback posted from another thread (call_soon_threadsafe, submit).
struct posted_callback {
  unique_function<void()> fn;
  source_location where;
};

// callbacks.cpp: the callback nodes' ready-queue and timer entry points.
void run_callback_node(void* node) noexcept;
void node_timer_fire(timer_entry* e) noexcept;
void release_node(callback_node* n) noexcept;
/// Releases a queued node without running it (the loop is closing).
void drop_callback(callback_node* n) noexcept;

/// One per-loop object (loop_local.hpp), keyed by its type.
struct loop_local_slot {
  const std::type_info* key;
  std::unique_ptr<loop_local_base> value;
};

struct loop_impl {
  explicit loop_impl(event_loop& owner) : owner(&owner) {}

  event_loop* owner;
  uv_loop_t uv{};
  uv_idle_t idle{};   // active while the ready queue is not empty: poll must not block
  uv_timer_t timer{}; // armed for the earliest entry of `timers`
  uv_async_t async{}; // wakes the loop for call_soon_threadsafe
  bool idle_active = false;
  bool timer_armed = false;
  std::chrono::steady_clock::time_point timer_due{};

  ready_queue ready;
  timer_heap timers;
  std::uint64_t timer_seq = 0;

  std::mutex ts_mutex;
  std::vector<posted_callback> ts_queue; // guarded by ts_mutex
  bool ts_closed = false;                // guarded by ts_mutex
  std::atomic<bool> executor_shutdown{false};

  exception_handler handler;
  bool debug = false;
  std::chrono::nanoseconds slow_callback{std::chrono::milliseconds(100)};

  task_base* tasks_head = nullptr; // pending tasks (the loop's strong references)
  std::size_t task_count = 0;
  std::uint64_t next_task_id = 1;
  task_base* exc_head = nullptr; // done tasks whose error nobody retrieved yet
  bool eager_tasks = false;      // set_eager_tasks: create_task runs the first step at once

  std::vector<loop_local_slot> locals; // per-loop objects, oldest first
  bool locals_closing = false;         // close() is destroying them: no new ones

  std::atomic<bool> running_flag{false};
  std::atomic<bool> stopping{false};
  bool closed = false;
  std::atomic<std::thread::id> thread{};

  void drain_ready() noexcept;
  /// Debug mode: runs `item`, then reports it if it took over 100 ms.
  void run_item_timed(ready_item item) noexcept;
  void report_if_slow(const std::string& what, const std::string& task, const source_location& where,
                      std::chrono::nanoseconds took) noexcept;
  void rearm_timer() noexcept;
  void on_timer() noexcept;
  void on_async() noexcept;
  void check_thread(const char* what) const;
};

/// Makes the loop's next iteration drain the ready queue (and not block).
void start_idle(loop_impl& impl) noexcept;

/// loop_schedule for simul's own sources, inline: a task's wake-up and a
/// yield are a push and a test.
inline void schedule(loop_impl& impl, ready_item item) {
  impl.ready.push(item);
  if (!impl.idle_active && !impl.closed) {
    start_idle(impl);
  }
}

/// Loop-side access to the loop's and the tasks' internals.
struct loop_access {
  static loop_impl& impl(const event_loop& loop) noexcept { return *loop.m_impl; }
  static void link(loop_impl& impl, task_base& t) noexcept;
  static void unlink(loop_impl& impl, task_base& t) noexcept;
  /// Destroys the frame of a task that would not finish and completes it as cancelled.
  static void destroy_pending(task_base& t) noexcept;
  /// The loop is going away: the task reports to stderr from now on.
  static void detach(task_base& t) noexcept;
  static task_base* next(task_base& t) noexcept { return t.m_all_next; }
  static task_base* next_exc(task_base& t) noexcept { return t.m_all_next; } // a done task: the error list
};

/// The private state of `loop`.
inline loop_impl& impl_of(const event_loop& loop) noexcept { return loop_access::impl(loop); }

/// The libuv loop under `loop`.
inline uv_loop_t* uv_loop(event_loop& loop) noexcept { return &impl_of(loop).uv; }

/// Reports an error through the loop's exception handler.
/// `where` is the creation place of the task or callback involved.
void report(event_loop& loop, std::string message, std::exception_ptr error = nullptr, std::string task = {},
            std::string where = {}) noexcept;

/// Reports without a loop (it was closed and destroyed): one line to stderr.
void event_loop_detached_report(const std::string& message, std::exception_ptr error, const std::string& task,
                                const std::string& where = {}) noexcept;

/// "file:line (function)", or "" for a default-constructed location.
std::string describe_location(const source_location& where);

/// Called by `close()` for a child process still running: closes its handle
/// (freeing the process's state once nobody holds it) and has a background
/// thread reap the child when it exits (process_state.cpp).
void close_process_at_loop_close(uv_handle_t* process_handle) noexcept;
/// Called by `close()` for each poll handle: if it watches a child's pidfd,
/// does what close_process_at_loop_close does and returns true (process_state.cpp).
bool close_child_watch_at_loop_close(uv_handle_t* poll_handle) noexcept;
/// Called by `close()` for each signal handle: if it belongs to a handler of
/// add_signal_handler, takes it out of the handler table, closes and frees it
/// and returns true (signals.cpp).
bool close_signal_at_loop_close(uv_handle_t* signal_handle) noexcept;
/// Called by `close()` for each poll handle: if it belongs to a watch of
/// add_reader/add_writer, takes it out of the watch table, closes and frees
/// it and returns true (fd_watch.cpp).
bool close_fd_watch_at_loop_close(uv_handle_t* poll_handle) noexcept;

/// Closes a handle allocated with `new Handle` and deletes it from the close
/// callback, when libuv is done with the memory. `data` is left alone until then.
template <class Handle>
void close_and_delete(Handle* h) noexcept {
  auto* base = reinterpret_cast<uv_handle_t*>(h);
  if (uv_is_closing(base) != 0) {
    return;
  }
  uv_close(base, [](uv_handle_t* closed) { delete reinterpret_cast<Handle*>(closed); });
}

} // namespace simul::detail
