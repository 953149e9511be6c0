#pragma once

// wait, wait_for, as_completed and shield: asyncio's other ways to await tasks.
//
// - `co_await wait(tasks, return_when, timeout)` suspends until the condition
//   holds or the timeout passes and gives `{done, not_done}` (pointers into
//   `tasks`). It never cancels the tasks and never throws on timeout.
//   Cancelling the waiting task leaves the tasks alone.
// - `co_await wait_for(aw, d)` gives `aw`'s result, or cancels it at the
//   deadline, waits until it has finished, and throws `timeout_error`. If the
//   awaited task finished before the deadline took effect, its result is
//   returned (no result is ever lost to a timeout that fired in the same
//   iteration). If the waiting task is cancelled, the cancellation goes to the
//   awaited task and `cancelled_error` is thrown, even if the timeout also
//   fired: an outside cancellation is never turned into a timeout.
// - `as_completed(tasks[, timeout])` is a range of awaitables: the i-th
//   `co_await` gives the result of the i-th task to finish (rethrowing its
//   exception); past the timeout, `co_await` throws `timeout_error`.
// - `co_await shield(aw)` waits for `aw` but does not pass a cancellation of
//   the waiting task on to it: the waiting task gets `cancelled_error`, the
//   shielded task keeps running.
//
// Thread-safety: loop thread only. Lifetime: `wait` refers to the caller's
// vector, which must outlive the `co_await`; `as_completed` keeps its own
// handles.

#include <simul/core/wait.hpp>
#include <simul/loop/detail/multi_wait.hpp>
#include <simul/loop/gather.hpp>
#include <simul/loop/task_handle.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

namespace simul {

namespace detail {

inline std::optional<std::chrono::steady_clock::time_point> deadline_from(std::chrono::nanoseconds timeout) {
  if (timeout == no_timeout) {
    return std::nullopt;
  }
  return deadline_after(timeout); // saturates: a huge timeout is no deadline in practice
}

template <class T>
task<wait_result<task_handle<T>>> wait_impl(std::vector<task_handle<T>>* tasks, return_when when,
                                            std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::vector<task_base*> children;
  for (auto& h : *tasks) {
    children.push_back(&h.base());
  }
  const auto m = when == return_when::all_completed     ? multi_wait::mode::all_completed
                 : when == return_when::first_completed ? multi_wait::mode::first_completed
                                                        : multi_wait::mode::first_exception;
  {
    multi_wait w(std::move(children), m, deadline);
    co_await w;
  }
  wait_result<task_handle<T>> result;
  for (auto& h : *tasks) {
    (h.done() ? result.done : result.not_done).push_back(&h);
  }
  co_return result;
}

template <class T>
task<T> wait_for_impl(task_handle<T> h, std::optional<std::chrono::steady_clock::time_point> deadline) {
  {
    multi_wait w({&h.base()}, multi_wait::mode::wait_for, deadline);
    co_await w;
    if (w.cancel_forwarded()) {
      h.base().mark_retrieved();
      throw cancelled_error(current_task_or_null() != nullptr ? current_task_or_null()->cancel_message()
                                                              : std::string("wait_for was cancelled"));
    }
    if (w.timed_out() && h.cancelled()) {
      h.base().mark_retrieved();
      throw timeout_error("wait_for: the deadline passed before the task finished");
    }
  }
  if constexpr (std::is_void_v<T>) {
    h.result();
  } else {
    co_return h.result();
  }
}

template <class T>
class shield_awaiter final : public task_wait_base {
 public:
  using task_wait_base::task_wait_base;
  bool on_cancel() noexcept override {
    unlink();
    abort_and_wake();
    return true;
  }
  T await_resume() {
    finish_wait();
    if (auto e = m_target->error()) {
      std::rethrow_exception(e);
    }
    if constexpr (!std::is_void_v<T>) {
      return static_cast<task_state<T>*>(m_target)->value();
    }
  }
};

template <class T>
class as_completed_state {
 public:
  as_completed_state(std::vector<task_handle<T>> hs, std::optional<std::chrono::steady_clock::time_point> deadline)
      : m_handles(std::move(hs)), m_links(m_handles.size()) {
    for (std::size_t i = 0; i < m_handles.size(); ++i) {
      auto& b = m_handles[i].base();
      if (b.done()) {
        m_finished.push_back(i);
      } else {
        m_links[i].fn = &on_done;
        m_links[i].owner = this;
        b.add_done_link(m_links[i]);
      }
    }
    if (deadline && m_finished.size() < m_handles.size()) {
      m_timer.deadline = *deadline;
      m_timer.owner = this;
      m_timer.fire = &on_deadline;
      m_loop = &m_handles.front().base().loop();
      loop_add_timer(*m_loop, m_timer);
    }
  }
  as_completed_state(const as_completed_state&) = delete;
  as_completed_state& operator=(const as_completed_state&) = delete;
  ~as_completed_state() {
    for (std::size_t i = 0; i < m_links.size(); ++i) {
      if (m_links[i].task != nullptr) {
        m_handles[i].base().remove_done_link(m_links[i]);
      }
    }
    if (m_timer.armed()) {
      loop_remove_timer(*m_loop, m_timer);
    }
  }

  class next_awaiter final : public waiter {
   public:
    explicit next_awaiter(std::shared_ptr<as_completed_state> s) noexcept : m_state(std::move(s)) {}
    next_awaiter(const next_awaiter&) = delete;
    next_awaiter& operator=(const next_awaiter&) = delete;
    ~next_awaiter() {
      if (m_state->m_waiting == this) {
        m_state->m_waiting = nullptr;
      }
    }
    bool await_ready() const noexcept { return !m_state->m_finished.empty() || m_state->m_timed_out; }
    bool await_suspend(std::coroutine_handle<> h) {
      if (m_state->m_waiting != nullptr) {
        throw error("as_completed: one co_await at a time");
      }
      if (!suspend_on(h)) {
        return false;
      }
      m_state->m_waiting = this;
      return true;
    }
    bool on_cancel() noexcept override {
      m_state->m_waiting = nullptr;
      abort_and_wake();
      return true;
    }
    T await_resume() {
      if (m_task != nullptr) {
        check_cancel();
      }
      auto& s = *m_state;
      if (s.m_finished.empty()) {
        throw timeout_error("as_completed: the deadline passed before every task finished");
      }
      auto index = s.m_finished.front();
      s.m_finished.pop_front();
      ++s.m_taken;
      auto& h = s.m_handles[index];
      if constexpr (std::is_void_v<T>) {
        h.result();
      } else {
        return h.result();
      }
    }

   private:
    friend class as_completed_state;
    void wake_up() noexcept { wake(); }
    std::shared_ptr<as_completed_state> m_state;
  };

  std::vector<task_handle<T>> m_handles;
  std::vector<done_link> m_links;
  std::deque<std::size_t> m_finished;
  timer_entry m_timer;
  event_loop* m_loop = nullptr;
  next_awaiter* m_waiting = nullptr;
  std::size_t m_taken = 0;
  bool m_timed_out = false;

 private:
  static void on_done(done_link* link, task_base* /*done*/) noexcept {
    auto* self = static_cast<as_completed_state*>(link->owner);
    self->m_finished.push_back(static_cast<std::size_t>(link - self->m_links.data()));
    self->wake_waiter();
  }
  static void on_deadline(timer_entry* e) noexcept {
    auto* self = static_cast<as_completed_state*>(e->owner);
    self->m_timed_out = true;
    self->wake_waiter();
  }
  void wake_waiter() noexcept {
    if (auto* w = std::exchange(m_waiting, nullptr)) {
      w->wake_up();
    }
  }
};

} // namespace detail

/// Waits until `when` holds for `tasks` or `timeout` passes (asyncio.wait).
/// Throws `simul::error` for an empty vector.
template <class T>
task<wait_result<task_handle<T>>> wait(std::vector<task_handle<T>>& tasks,
                                       return_when when = return_when::all_completed,
                                       std::chrono::nanoseconds timeout = no_timeout) {
  if (tasks.empty()) {
    throw error("wait: the set of tasks is empty");
  }
  return detail::wait_impl(&tasks, when, detail::deadline_from(timeout));
}

/// `aw`'s result, or `timeout_error` once `timeout` passed (asyncio.wait_for).
/// `aw` is a `task<T>` (scheduled now), a `task_handle<T>` or any other
/// awaitable (a lock's `acquire()`, a queue's `get()`, a stream read, a
/// `simul::future`...), which runs in a task of its own: an rvalue is moved
/// into it, an lvalue must outlive it. `no_timeout` waits without a deadline.
template <class A>
auto wait_for(A&& aw, std::chrono::nanoseconds timeout) {
  auto h = detail::to_handle(std::forward<A>(aw));
  return detail::wait_for_impl(std::move(h), detail::deadline_from(timeout));
}

/// Waits for `aw` without passing a cancellation of the waiting task on (asyncio.shield).
/// `aw` is a task, a task handle or any awaitable (see wait_for).
template <class A>
auto shield(A&& aw) {
  auto h = detail::to_handle(std::forward<A>(aw));
  using T = detail::awaited_value_t<decltype(h)>;
  return detail::shield_awaiter<T>(h.base());
}

/// The tasks' results in completion order: a range of awaitables (asyncio.as_completed).
///
/// Thread-safety: loop thread only. Lifetime: keeps the tasks' handles.
template <class T>
class completion_range {
 public:
  using state = detail::as_completed_state<T>;

  completion_range(std::vector<task_handle<T>> hs, std::optional<std::chrono::steady_clock::time_point> deadline)
      : m_state(std::make_shared<state>(std::move(hs), deadline)) {}

  /// How many results are still to be awaited.
  [[nodiscard]] std::size_t remaining() const noexcept { return m_state->m_handles.size() - m_state->m_taken; }
  /// An awaitable for the next result to finish.
  [[nodiscard]] typename state::next_awaiter next() const {
    if (remaining() == 0) {
      throw error("as_completed: every result was already taken");
    }
    return typename state::next_awaiter(m_state);
  }

  class iterator {
   public:
    using difference_type = std::ptrdiff_t;
    using value_type = typename state::next_awaiter;
    iterator() = default;
    explicit iterator(const completion_range* r, std::size_t i) : m_range(r), m_index(i) {}
    typename state::next_awaiter operator*() const { return typename state::next_awaiter(m_range->m_state); }
    iterator& operator++() {
      ++m_index;
      return *this;
    }
    void operator++(int) { ++m_index; }
    bool operator==(const iterator& o) const noexcept { return m_index == o.m_index; }

   private:
    const completion_range* m_range = nullptr;
    std::size_t m_index = 0;
  };
  [[nodiscard]] iterator begin() const { return iterator(this, 0); }
  [[nodiscard]] iterator end() const { return iterator(this, m_state->m_handles.size()); }

 private:
  std::shared_ptr<state> m_state;
};

/// The results of `tasks` as they finish; throws `timeout_error` from a
/// `co_await` past `timeout`.
template <class T>
completion_range<T> as_completed(std::vector<task_handle<T>> tasks, std::chrono::nanoseconds timeout = no_timeout) {
  return completion_range<T>(std::move(tasks), detail::deadline_from(timeout));
}

/// as_completed over lazy tasks: schedules each one now. The tasks' creation
/// place (`where`, leave it out) is as_completed's call site.
template <class T>
completion_range<T> as_completed(std::vector<task<T>> tasks, std::chrono::nanoseconds timeout = no_timeout,
                                 detail::source_location where = detail::source_location::current()) {
  std::vector<task_handle<T>> hs;
  hs.reserve(tasks.size());
  for (auto& t : tasks) {
    hs.push_back(create_task(std::move(t), {}, where));
  }
  return completion_range<T>(std::move(hs), detail::deadline_from(timeout));
}

} // namespace simul
