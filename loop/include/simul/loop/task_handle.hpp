#pragma once

// Scheduled tasks: task_handle<T>, create_task_options, current_task, all_tasks
// (`create_task` and `run` are in event_loop.hpp, which includes this header).
//
// `create_task(t)` turns a lazy `task<T>` into a scheduled task (asyncio.Task):
// its first step runs on the next loop iteration, whether or not anybody
// awaits it, and the loop keeps it alive until it finishes. The returned
// `task_handle<T>` observes and controls it: `co_await` it (any number of
// times) for its result, `cancel()` it, ask `done()` / `result()` /
// `exception()`, add done callbacks, or take a `simul::future<T>` that other
// threads can wait on.
//
// Cancellation is asyncio's. `cancel(msg)` makes the task's current `co_await`
// throw `cancelled_error` (at once if it is suspended, at its next suspension
// otherwise); the frame unwinds normally and may catch the error. A task whose
// coroutine ends with `cancelled_error` is cancelled; one that swallows it
// finishes normally, with `cancelling()` still counting the request until
// `uncancel()`. A task awaiting another task forwards the cancellation to it.
//
// Never silent: a task that failed and whose exception nobody retrieved
// (`co_await`, `result()`, `exception()`) is reported through the loop's
// exception handler when its last handle goes away, with its name and where
// it was created (`exception_context::where`: create_task's call site).
//
// Thread-safety: loop thread only, except `get_future()`'s future, which any
// thread may wait on or cancel. Lifetime: handles share ownership of the task;
// they must not outlive the loop.

#include <simul/core/future.hpp>
#include <simul/loop/detail/task_base.hpp>
#include <simul/loop/errors.hpp>
#include <simul/loop/task.hpp>

#include <concepts>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul {

class event_loop;

/// How `create_task` starts a task: `loop.create_task(t, {.eager = true})`.
/// Trivially destructible on purpose: safe as a braced temporary inside a
/// `co_await` expression (see the g++ 12 note in docs/loop.md).
struct create_task_options {
  /// The task's name ("Task-<n>" if empty); copied by create_task.
  std::string_view name{};
  /// Run the task at once, inside create_task, until its first suspension
  /// (Python 3.12's eager tasks): a task that finishes without suspending is
  /// done when create_task returns and is never scheduled. Unset: the
  /// loop's setting (`event_loop::set_eager_tasks`). Only a loop running on
  /// the calling thread starts tasks eagerly (asyncio's rule); otherwise the
  /// first step is scheduled as usual.
  std::optional<bool> eager{};
};

namespace detail {

template <class T>
T task_state<T>::value() {
  if constexpr (!std::is_void_v<T>) {
    if constexpr (std::is_copy_constructible_v<T>) {
      return *m_value;
    } else {
      if (!m_value) {
        throw invalid_state_error("task result was already moved out (the type is move-only)");
      }
      T out = std::move(*m_value);
      m_value.reset();
      return out;
    }
  }
}

/// The awaiter for a scheduled task: suspends until it completes.
class task_wait_base : public waiter {
 public:
  explicit task_wait_base(task_base& t) noexcept : m_target(&t) { t.add_ref(); }
  task_wait_base(const task_wait_base&) = delete;
  task_wait_base& operator=(const task_wait_base&) = delete;
  ~task_wait_base() {
    if (m_linked) {
      m_target->remove_done_link(m_link);
    }
    m_target->release();
  }

  bool await_ready() const noexcept { return m_target->done(); }
  bool await_suspend(std::coroutine_handle<> h) {
    if (m_target == current_task_or_null()) {
      throw error("a task cannot await itself");
    }
    if (!suspend_on(h)) {
      // A cancellation is pending (the task cancelled itself, say): asyncio
      // passes it to the awaited task and waits for that one to finish.
      auto* self = current_task_or_null();
      if (!m_target->cancel(self->cancel_message())) {
        return false;
      }
      self->take_must_cancel();
      if (!suspend_on(h)) {
        return false;
      }
    }
    m_link.fn = &on_done;
    m_link.owner = this;
    m_target->add_done_link(m_link);
    m_linked = true;
    return true;
  }
  bool on_cancel() noexcept override { return m_target->cancel(m_task->cancel_message()); }
  /// The task awaited (format_tasks follows the chain through it).
  [[nodiscard]] const task_base* awaited() const noexcept { return m_target; }

 protected:
  void finish_wait() {
    if (m_linked) {
      m_target->remove_done_link(m_link);
      m_linked = false;
    }
    if (m_task != nullptr) {
      check_cancel();
    }
    m_target->mark_retrieved();
  }

  void unlink() noexcept {
    if (m_linked) {
      m_target->remove_done_link(m_link);
      m_linked = false;
    }
  }

  task_base* m_target;

 private:
  static void on_done(done_link* link, task_base* /*done*/) noexcept {
    auto* self = static_cast<task_wait_base*>(link->owner);
    self->m_linked = false;
    self->wake();
  }
  done_link m_link;
  bool m_linked = false;
};

} // namespace detail

/// A scheduled task without its result type: what `current_task()` and
/// `all_tasks()` return, and the base of `task_handle<T>`.
///
/// Thread-safety: loop thread only. Lifetime: shares ownership of the task;
/// must not outlive the loop.
class basic_task_handle {
 public:
  basic_task_handle() noexcept = default;

  /// True if the handle refers to a task.
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(m_state); }
  explicit operator bool() const noexcept { return valid(); }

  /// Requests cancellation (asyncio.Task.cancel): false if the task is done.
  bool cancel(const std::string& message = {}) { return base().cancel(message); }
  /// True if the task ended cancelled.
  [[nodiscard]] bool cancelled() const { return base().is_cancelled(); }
  /// How many cancellation requests are pending (asyncio.Task.cancelling).
  [[nodiscard]] int cancelling() const { return base().cancelling(); }
  /// Takes back one cancellation request; returns how many remain.
  int uncancel() { return base().uncancel(); }
  /// True once the task finished, failed or was cancelled.
  [[nodiscard]] bool done() const { return base().done(); }
  /// The task's exception (null if it finished normally). Throws
  /// `invalid_state_error` if not done and `cancelled_error` if cancelled.
  [[nodiscard]] std::exception_ptr exception() const;
  /// The task's name ("Task-<n>" unless set).
  [[nodiscard]] std::string get_name() const { return base().name(); }
  void set_name(std::string name) { base().set_name(std::move(name)); }

  /// Calls `f()` (or `f(handle)`) on the loop once the task is done, through
  /// call_soon; at the next iteration if it is done already.
  template <class F>
  void add_done_callback(F f) {
    if constexpr (std::is_invocable_v<F&, basic_task_handle&>) {
      base().add_done_callback([f = std::move(f), self = *this]() mutable { f(self); });
    } else {
      base().add_done_callback(std::move(f));
    }
  }

  /// Suspends until the task is done; rethrows its exception. Cancelling
  /// the awaiting task cancels this task too.
  auto operator co_await() const {
    struct awaiter : detail::task_wait_base {
      using task_wait_base::task_wait_base;
      void await_resume() {
        finish_wait();
        if (auto e = m_target->error()) {
          std::rethrow_exception(e);
        }
      }
    };
    return awaiter{base()};
  }

  /// The task's internals (for simul's own combinators).
  [[nodiscard]] detail::task_base& base() const {
    if (!m_state) {
      throw invalid_state_error("empty task handle");
    }
    return *m_state.get();
  }

  friend bool operator==(const basic_task_handle& a, const basic_task_handle& b) noexcept {
    return a.m_state.get() == b.m_state.get();
  }

  /// Wraps a task (adds a reference). Internal.
  explicit basic_task_handle(detail::task_base* t) noexcept : m_state(t) {
    if (t != nullptr) {
      t->add_ref();
    }
  }

 protected:
  detail::task_ref<detail::task_base> m_state;
};

/// A scheduled task with result type T (asyncio.Task). See the file comment.
///
/// Thread-safety: loop thread only (its `get_future()` is any-thread).
/// Lifetime: shares ownership of the task; must not outlive the loop.
template <class T>
class task_handle : public basic_task_handle {
 public:
  task_handle() noexcept = default;

  /// The result: rethrows the task's exception, throws `cancelled_error` if
  /// it was cancelled, `invalid_state_error` if not done. A copyable value is
  /// copied; a move-only one is moved out by the first call.
  T result() {
    auto& s = state();
    if (!s.done()) {
      throw invalid_state_error("result is not ready: the task is not done");
    }
    s.mark_retrieved();
    if (auto e = s.error()) {
      std::rethrow_exception(e);
    }
    return s.value();
  }

  /// A future completed with the task's outcome, for other threads. Calling
  /// `cancel()` on it (from any thread) cancels the task on its loop. For a
  /// move-only T the value moves into the future.
  future<T> get_future();

  /// Suspends until the task is done and gives its result (see `result()`).
  auto operator co_await() const {
    struct awaiter : detail::task_wait_base {
      using task_wait_base::task_wait_base;
      T await_resume() {
        finish_wait();
        if (auto e = m_target->error()) {
          std::rethrow_exception(e);
        }
        return static_cast<detail::task_state<T>*>(m_target)->value();
      }
    };
    return awaiter{state()};
  }

  /// Wraps a task (adopts the reference). Internal.
  explicit task_handle(detail::task_state<T>* s) noexcept : basic_task_handle() {
    m_state = detail::task_ref<detail::task_base>(s);
  }

 private:
  detail::task_state<T>& state() const { return static_cast<detail::task_state<T>&>(base()); }
};

namespace detail {

/// The result of a finished task whose handle `h` is going away: moved out
/// when `h` holds the task's last reference (nobody can read the value
/// again), else as `h.result()` gives it (a copy). What run and
/// run_until_complete return.
template <class T>
T take_result(task_handle<T>&& h) {
  if constexpr (!std::is_void_v<T> && std::is_copy_constructible_v<T> && std::is_move_constructible_v<T>) {
    auto& s = static_cast<task_state<T>&>(h.base());
    if (s.done() && s.use_count() == 1 && !s.error()) {
      s.mark_retrieved();
      return s.take_value();
    }
  }
  return h.result();
}

} // namespace detail

/// The task running now, or an empty handle outside any task.
basic_task_handle current_task();
/// Every task of the running loop that is not done yet.
std::vector<basic_task_handle> all_tasks();
/// Every task of `loop` that is not done yet.
std::vector<basic_task_handle> all_tasks(event_loop& loop);

// ---- definitions ----

template <class T>
future<T> task_handle<T>::get_future() {
  auto& s = state();
  promise<T> p;
  auto f = p.get_future();
  p.set_running_or_notify_cancel();
  // The hook may run on any thread, so it holds no reference to the task
  // (only the loop's thread touches task references): it goes through the
  // loop, where `alive` says whether the task is still there to cancel.
  auto alive = std::make_shared<detail::task_base*>(&s);
  p.set_cancel_hook([loop = &s.loop(), alive]() {
    try {
      detail::loop_post_threadsafe(*loop, [alive] {
        if (*alive != nullptr) {
          (*alive)->cancel();
        }
      });
      return true;
    } catch (...) {
      return false;
    }
  });
  s.add_done_callback([p = std::move(p), self = *this, alive]() mutable {
    *alive = nullptr;
    auto& st = self.state();
    st.mark_retrieved();
    if (st.is_cancelled()) {
      p.set_cancelled(st.cancel_message().empty() ? "task was cancelled" : st.cancel_message());
    } else if (auto e = st.error()) {
      p.set_exception(e);
    } else if constexpr (std::is_void_v<T>) {
      p.set_value();
    } else {
      detail::fulfil(p, [&] { return st.value(); });
    }
  });
  return f;
}

} // namespace simul
