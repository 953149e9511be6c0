#pragma once

// simul::task_group: structured concurrency (asyncio.TaskGroup).
//
//   co_await simul::with_task_group([&](simul::task_group& tg) -> simul::task<void> {
//     tg.create_task(fetch(a));
//     tg.create_task(fetch(b));
//     co_return;
//   });                       // every task has finished here
//
// or, spelled out: `simul::task_group tg; tg.create_task(...); co_await tg.join();`
//
// The rules are asyncio's:
// - `join()` (the end of the `async with`) waits for every task of the group,
//   including tasks added while it waits.
// - The first task to fail cancels every other task of the group and, if the
//   body is still running, the task that owns the group, so the body unwinds
//   to `join()`. No task can be added after that (`simul::error`).
// - When all are done, the errors (everything but cancellations, and the
//   body's own exception) are thrown together as one `exception_group`.
// - A cancellation of the owning task from outside (while the body runs or
//   while `join()` waits) cancels the group's tasks too and propagates as
//   `cancelled_error` once they are done. If there are errors as well, the
//   `exception_group` is thrown and the outside cancellation stays pending:
//   the owning task's next `co_await` throws it. It is never lost.
// - `cancel()` stops the group early (asyncio's TaskGroup.cancel): every task
//   of the group and, if it is still running, the body are cancelled, and the
//   group then ends without `cancelled_error` — the owning task goes on after
//   `join()` / `with_task_group`. Errors the tasks raise while unwinding are
//   still thrown as an `exception_group`; a cancellation from outside still
//   propagates.
//
// Thread-safety: loop thread only, inside the owning task. Lifetime: the group
// lives in the owning frame; destroying it without `join()` cancels the tasks
// still running (and reports it in debug mode).

#include <simul/loop/task.hpp>
#include <simul/loop/task_handle.hpp>

#include <concepts>
#include <exception>
#include <list>
#include <string>
#include <vector>

namespace simul {

/// Several errors at once: what a task_group throws (ExceptionGroup).
class exception_group : public error {
 public:
  exception_group(const std::string& message, std::vector<std::exception_ptr> errors);
  /// The errors, in the order they happened.
  [[nodiscard]] const std::vector<std::exception_ptr>& exceptions() const noexcept { return m_errors; }

 private:
  std::vector<std::exception_ptr> m_errors;
};

/// A group of tasks that finish together. See the file comment.
///
/// Thread-safety: loop thread only. Lifetime: not movable; lives in the owning frame.
class task_group {
 public:
  /// A group owned by the current task. Throws `simul::error` outside a task.
  task_group();
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;
  ~task_group();

  /// Schedules `t` as a task of the group, started as `options` say (an
  /// eager task that finishes inside this call counts as done at once; one
  /// that fails aborts the group). Throws `simul::error` once the group is
  /// shutting down (a task failed) or has been joined.
  template <class T>
  task_handle<T> create_task(task<T> t, create_task_options options = {},
                             detail::source_location where = detail::source_location::current()) {
    check_open();
    auto h = simul::create_task(std::move(t), options, where);
    add(h);
    return h;
  }
  /// As above, with a name (`tg.create_task(t, "fetch")`).
  template <class T, std::convertible_to<std::string> Name>
  task_handle<T> create_task(task<T> t, Name&& name,
                             detail::source_location where = detail::source_location::current()) {
    const std::string n(std::forward<Name>(name));
    return create_task(std::move(t), create_task_options{.name = n}, where);
  }

  /// Stops the group: cancels its unfinished tasks and, if the body is still
  /// running, the owning task (its next `co_await` throws `cancelled_error`,
  /// which the group absorbs at `join()`). No task can be added afterwards.
  /// Callable from any task of the loop, including the group's own tasks;
  /// does nothing once the group is joined.
  void cancel();

  class join_awaiter;
  /// Waits for every task; throws the errors as one `exception_group`.
  /// `body_error` is what the body threw, if anything (see with_task_group).
  [[nodiscard]] join_awaiter join(std::exception_ptr body_error = nullptr);

  class join_awaiter final : public detail::waiter {
   public:
    join_awaiter(task_group& g, std::exception_ptr body_error) noexcept : m_group(&g), m_body_error(body_error) {}
    join_awaiter(const join_awaiter&) = delete;
    join_awaiter& operator=(const join_awaiter&) = delete;
    ~join_awaiter();
    bool await_ready();
    bool await_suspend(std::coroutine_handle<> h);
    void await_resume();
    bool on_cancel() noexcept override;

   private:
    friend class task_group;
    void wake_up() noexcept { wake(); }
    task_group* m_group;
    std::exception_ptr m_body_error;
    bool m_entered = false;
  };

 private:
  struct child {
    task_group* group;
    basic_task_handle handle;
    detail::done_link link;
  };
  void check_open() const;
  void add(const basic_task_handle& h);
  void abort() noexcept;
  static void on_child_done(detail::done_link* link, detail::task_base* done) noexcept;
  void enter_join(std::exception_ptr body_error);
  void finish_join();

  basic_task_handle m_parent;
  std::list<child> m_children;
  std::vector<std::exception_ptr> m_errors;
  join_awaiter* m_joiner = nullptr;
  std::size_t m_pending = 0;
  bool m_aborting = false;
  bool m_joining = false;
  bool m_joined = false;
  bool m_parent_cancel_requested = false;
  int m_base_cancelling = 0;
};

inline task_group::join_awaiter task_group::join(std::exception_ptr body_error) { return {*this, body_error}; }

/// Runs `body(tg)` with a fresh group and joins it, passing the body's
/// exception to the join as `async with` does.
template <class F>
task<void> with_task_group(F body) {
  task_group tg;
  std::exception_ptr body_error;
  try {
    co_await body(tg);
  } catch (...) {
    body_error = std::current_exception();
  }
  co_await tg.join(body_error);
}

} // namespace simul
