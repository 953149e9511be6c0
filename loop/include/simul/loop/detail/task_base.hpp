#pragma once

// The machinery under tasks and awaitables: what a scheduled task is to the
// loop, how an awaitable suspends a task and how a cancellation reaches it.
//
// A task (`task_base`) is stepped by the loop: a step resumes the coroutine
// where it last suspended and runs it until its next suspension. Every
// awaitable that really suspends is a `waiter`: in `await_suspend` it calls
// `suspend_on(h)`, which registers it as the task's current waiter; when its
// operation finishes it calls `wake()`, which schedules the task's next step
// on the loop's ready queue; in `await_resume` it calls `check_cancel()`.
// `task_base::cancel()` asks the registered waiter to stop (`on_cancel()`);
// a waiter that cannot stop any more (its result is on its way) returns false,
// and the cancellation is delivered at the next `check_cancel()` instead, so a
// cancellation is never lost and never delivered twice.
//
// Everything here runs on the loop's thread only, except `task_base`'s
// reference count, which is atomic because a `simul::future` handed to another
// thread may hold a reference.

#include <simul/core/detail/unique_function.hpp>
#include <simul/core/error.hpp>
#include <simul/loop/detail/context.hpp>
#include <simul/loop/detail/frame_pool.hpp>
#include <simul/loop/detail/source_location.hpp>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <utility>

namespace simul {
class event_loop;
} // namespace simul

namespace simul::detail {

/// One entry of a loop's ready queue: `run(arg)` is called once.
struct ready_item {
  void (*run)(void*) noexcept;
  void* arg;
};

/// A deadline in a loop's timer heap. The owner keeps it alive while armed.
struct timer_entry {
  static constexpr std::size_t k_unarmed = static_cast<std::size_t>(-1);
  std::chrono::steady_clock::time_point deadline{};
  std::uint64_t seq = 0;
  std::size_t heap_index = k_unarmed;
  void (*fire)(timer_entry*) noexcept = nullptr;
  void* owner = nullptr;
  [[nodiscard]] bool armed() const noexcept { return heap_index != k_unarmed; }
};

// Loop hooks, implemented in the compiled library.
void loop_schedule(event_loop& loop, ready_item item);
void loop_add_timer(event_loop& loop, timer_entry& entry);
void loop_remove_timer(event_loop& loop, timer_entry& entry) noexcept;
event_loop* running_loop_or_null() noexcept;
event_loop& running_loop_checked(const char* what);
/// loop.call_soon_threadsafe(f) for code that sees only a declared loop.
void loop_post_threadsafe(event_loop& loop, unique_function<void()> f);

class task_base;
task_base* current_task_or_null() noexcept;

/// yield_now's suspension: queues the current task's next step behind
/// everything ready now; false (do not suspend) if a cancellation is pending.
/// Throws `simul::error` outside a task.
bool yield_suspend(std::coroutine_handle<> h);
/// yield_now's resumption: throws a cancellation that arrived meanwhile.
void yield_resume();

/// A link in a task's list of things to do when it completes. Internal links
/// run synchronously at completion and must only schedule work; `fn` gets
/// the link (its `task` already cleared: it is unlinked) and the task.
struct done_link {
  done_link* prev = nullptr;
  done_link* next = nullptr;
  task_base* task = nullptr;
  void (*fn)(done_link*, task_base*) noexcept = nullptr;
  void* owner = nullptr;
};

/// Base of every awaitable that suspends a task. See the file comment.
class waiter {
 public:
  /// The task was cancelled while suspended here. Stop the operation and
  /// return true if the task will be woken with a cancellation (call
  /// `abort_and_wake()` now, or set `m_aborted` and `wake()` later when the
  /// operation reports its cancellation); return false if the operation has
  /// already completed and its wake-up is on its way.
  virtual bool on_cancel() noexcept = 0;

 protected:
  waiter() = default;
  ~waiter() = default;
  waiter(const waiter&) = default;
  waiter& operator=(const waiter&) = default;

  /// In `await_suspend(h)`: binds to the current task and registers this
  /// waiter. Returns false, registering nothing, if a cancellation is already
  /// pending: `await_suspend` must then return false (do not suspend) and
  /// `await_resume` will throw it. Throws `simul::error` outside a task.
  bool suspend_on(std::coroutine_handle<> h);
  /// The operation completed: unregisters and schedules the task's next step.
  void wake() noexcept;
  /// As `wake()`, one loop iteration later: the task's step is queued behind
  /// everything that becomes ready in the next iteration (asyncio's wake-up
  /// through a future's done callback, as `wait` resumes).
  void wake_later() noexcept;
  /// `m_aborted = true; wake();`
  void abort_and_wake() noexcept {
    m_aborted = true;
    wake();
  }
  /// In `await_resume`: throws `cancelled_error` if the operation was aborted
  /// by a cancellation or a cancellation is pending for the task.
  void check_cancel();

  task_base* m_task = nullptr;
  bool m_aborted = false;
};

/// What the loop knows of a scheduled task (asyncio.Task without its result).
class task_base {
 public:
  enum class status : std::uint8_t { pending, running, finished, failed, cancelled };

  task_base(const task_base&) = delete;
  task_base& operator=(const task_base&) = delete;

  // A task state lives in front of its coroutine's frame, in the same block
  // (task_state<T> in task.hpp): it is never allocated on its own.

  void add_ref() noexcept { m_refs.fetch_add(1, std::memory_order_relaxed); }
  /// The references held now (handles, waiters, the loop's queues).
  [[nodiscard]] std::uint32_t use_count() const noexcept { return m_refs.load(std::memory_order_acquire); }
  void release() noexcept {
    // The last reference needs no read-modify-write: nobody else holds one
    // to copy from. The acquire load pairs with other threads' releases.
    if (m_refs.load(std::memory_order_acquire) == 1 || m_refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      destroy();
    }
  }

  /// asyncio.Task.cancel: true if the request was taken (the task was not done).
  bool cancel(const std::string& message = {});
  [[nodiscard]] int cancelling() const noexcept { return m_cancel_requests; }
  int uncancel() noexcept {
    if (m_cancel_requests > 0) {
      --m_cancel_requests;
      if (m_cancel_requests == 0) {
        m_must_cancel = false;
      }
    }
    return m_cancel_requests;
  }
  [[nodiscard]] bool done() const noexcept { return m_status >= status::finished; }
  [[nodiscard]] bool is_cancelled() const noexcept { return m_status == status::cancelled; }
  [[nodiscard]] status state() const noexcept { return m_status; }
  [[nodiscard]] event_loop& loop() const noexcept { return *m_loop; }
  [[nodiscard]] std::string name() const;
  void set_name(std::string name) { extras().name = std::move(name); }
  [[nodiscard]] std::uint64_t id() const noexcept { return m_id; }
  /// What the task is suspended on now (null: not suspended on a waiter).
  [[nodiscard]] const waiter* current_waiter() const noexcept { return m_waiter; }
  /// The task has taken its first step.
  [[nodiscard]] bool started() const noexcept { return m_started; }
  /// Where the task was created (create_task's call site).
  [[nodiscard]] const source_location& where() const noexcept { return m_where; }
  void set_where(const source_location& where) noexcept { m_where = where; }
  [[nodiscard]] const std::string& cancel_message() const noexcept {
    static const std::string none;
    return m_extras ? m_extras->cancel_message : none;
  }

  /// The task's context_var values (null: none). See context_var.hpp.
  [[nodiscard]] const context_ptr* context_if_any() const noexcept { return m_extras ? &m_extras->context : nullptr; }
  context_ptr& context_slot() { return extras().context; }

  /// The error the task failed with (a `cancelled_error` if cancelled), or null.
  [[nodiscard]] std::exception_ptr error() const noexcept { return m_error; }
  void mark_retrieved() noexcept;

  /// Internal links: run synchronously when the task completes.
  void add_done_link(done_link& link) noexcept;
  void remove_done_link(done_link& link) noexcept;
  /// A user callback, scheduled with call_soon when the task completes (or now, if done).
  void add_done_callback(unique_function<void()> callback);

  /// An eager task's first step, run by create_task itself (after the name
  /// and context are set) instead of by the loop. The task may be done after.
  void run_first_step_now() noexcept { step(); }

  /// Consumes a pending cancellation; true if there was one.
  bool take_must_cancel() noexcept { return std::exchange(m_must_cancel, false); }

  /// Throws the pending cancellation, if any (used by waiters).
  void throw_if_must_cancel();

  // Loop plumbing.
  static void step_thunk(void* self) noexcept { static_cast<task_base*>(self)->step(); }
  /// Queues the task's step (waiter::wake_later's first hop).
  static void reschedule_thunk(void* self) noexcept;
  // The loop's list of pending tasks; once the task is done, the same links
  // hold it in the loop's list of tasks with an unretrieved error.
  task_base* m_all_prev = nullptr;
  task_base* m_all_next = nullptr;
  /// A done link kept in the task for the first multi_wait (gather, wait)
  /// that waits on it, so a gather of N tasks needs no N-entry link array.
  done_link m_wait_link{};
  /// The embedded link, if no one is using it.
  done_link* free_wait_link() noexcept { return m_wait_link.task == nullptr ? &m_wait_link : nullptr; }

 protected:
  explicit task_base(event_loop& loop);
  virtual ~task_base();

  /// Called once with the root coroutine's outcome; takes the result from the
  /// frame and destroys it.
  virtual std::exception_ptr take_result_and_destroy_frame() noexcept = 0;
  /// Destroys the frame of a task that never ran or never finished.
  virtual void destroy_frame() noexcept = 0;
  /// Destroys the frame if it is still there, then this state, and frees the
  /// block that held both.
  virtual void destroy_self() noexcept = 0;

  /// Schedules the first step (not if `eager`: see `run_first_step_now`) and
  /// takes the loop's reference. Throws (and changes nothing) if the ready
  /// queue cannot grow.
  void start(std::coroutine_handle<> root, bool eager = false);
  /// The root coroutine reached its end (value or exception in the frame).
  void on_root_final() noexcept;

 private:
  friend class waiter;
  friend class task_promise_base;
  friend bool yield_suspend(std::coroutine_handle<> h);
  friend void yield_resume();
  friend struct loop_access;
  void step() noexcept;
  /// A cancellation came before the first step: completes the task
  /// cancelled; its body never runs.
  void cancel_first_step() noexcept;
  void complete(status final_status) noexcept;
  void destroy() noexcept;

  std::atomic<std::uint32_t> m_refs{1};
  int m_cancel_requests = 0;
  status m_status = status::pending;
  bool m_must_cancel = false;
  bool m_started = false;
  bool m_retrieved = false;
  bool m_in_exc_list = false;
  event_loop* m_loop;
  std::coroutine_handle<> m_resume;
  waiter* m_waiter = nullptr;
  done_link* m_links = nullptr;
  done_link* m_links_tail = nullptr;
  std::exception_ptr m_error;
  // Rarely used, so kept out of line: a million tasks stay small.
  struct rare {
    std::string name;
    std::string cancel_message;
    context_ptr context; // context_var values (null: none)
  };
  rare& extras() {
    if (!m_extras) {
      m_extras = std::make_unique<rare>();
    }
    return *m_extras;
  }
  std::unique_ptr<rare> m_extras;
  std::uint64_t m_id;
  source_location m_where{};
};

/// Intrusive reference to a task.
template <class Task>
class task_ref {
 public:
  task_ref() noexcept = default;
  explicit task_ref(Task* t) noexcept : m_ptr(t) {} // adopts one reference
  task_ref(const task_ref& o) noexcept : m_ptr(o.m_ptr) {
    if (m_ptr) {
      m_ptr->add_ref();
    }
  }
  task_ref(task_ref&& o) noexcept : m_ptr(o.m_ptr) { o.m_ptr = nullptr; }
  task_ref& operator=(task_ref o) noexcept {
    std::swap(m_ptr, o.m_ptr);
    return *this;
  }
  ~task_ref() {
    if (m_ptr) {
      m_ptr->release();
    }
  }
  Task* get() const noexcept { return m_ptr; }
  Task* operator->() const noexcept { return m_ptr; }
  explicit operator bool() const noexcept { return m_ptr != nullptr; }

 private:
  Task* m_ptr = nullptr;
};

} // namespace simul::detail
