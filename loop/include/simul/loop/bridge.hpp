#pragma once

// Bridges between the loop and other threads.
//
// - `co_await fut` on any `simul::future<T>` (from a thread pool, a process
//   pool, `event_loop::submit`, another thread) suspends the task without
//   blocking the loop; the completion, on whatever thread it happens, comes
//   back through `call_soon_threadsafe` and the task resumes on the loop's
//   thread. Cancelling the task cancels the future (`future::cancel()`), and
//   the task gets `cancelled_error` at once.
// - `loop.run_in_executor(ex, f, args...)` submits to any simul::executor and
//   returns its future, to be awaited.
// - `run_coroutine_threadsafe(t, loop)` schedules `t` on `loop` from any
//   thread and returns a `simul::future<T>` of its result; cancelling that
//   future cancels the task.
//
// Thread-safety: `co_await fut` on the loop thread inside a task;
// `run_coroutine_threadsafe` from any thread. Lifetime: the loop must outlive
// the future's completion callback (a completion arriving after the loop
// closed is dropped).

#include <simul/core/future.hpp>
#include <simul/loop/event_loop.hpp>
#include <simul/loop/task.hpp>
#include <simul/loop/task_handle.hpp>

#include <memory>
#include <utility>

namespace simul {

namespace detail {

/// What the completion callback reaches, through a cell the awaiter clears
/// when it goes away (loop thread only).
class future_wait_base : public waiter {
 public:
  void woken() noexcept {
    *m_cell = nullptr;
    wake();
  }

 protected:
  std::shared_ptr<future_wait_base*> m_cell;
};

void post_wake(event_loop& loop, std::shared_ptr<future_wait_base*> cell) noexcept;

template <class T>
class future_awaiter final : public future_wait_base {
 public:
  explicit future_awaiter(future<T>& f) noexcept : m_future(&f) {}
  future_awaiter(const future_awaiter&) = delete;
  future_awaiter& operator=(const future_awaiter&) = delete;
  ~future_awaiter() {
    if (m_cell) {
      *m_cell = nullptr; // a late completion finds nobody
    }
  }

  bool await_ready() const { return m_future->ready(); }
  bool await_suspend(std::coroutine_handle<> h) {
    if (!suspend_on(h)) {
      return false;
    }
    m_cell = std::make_shared<future_wait_base*>(this);
    m_future->on_ready([loop = &m_task->loop(), cell = m_cell] { post_wake(*loop, cell); });
    return true;
  }
  bool on_cancel() noexcept override {
    if (m_future->ready()) {
      // The result is in and its wake-up on its way: the cancellation waits
      // for the next await (and uncancel() can still take it back).
      return false;
    }
    *m_cell = nullptr;
    try {
      m_future->cancel();
    } catch (...) {
    }
    abort_and_wake();
    return true;
  }
  T await_resume() {
    if (m_task != nullptr) {
      check_cancel();
    }
    return m_future->get();
  }

 private:
  future<T>* m_future;
};

template <class T>
void fulfil_from(promise<T>& p, task_base& t) {
  if (t.is_cancelled()) {
    p.set_cancelled(t.cancel_message().empty() ? "task was cancelled" : t.cancel_message());
  } else if (auto e = t.error()) {
    p.set_exception(e);
  } else if constexpr (std::is_void_v<T>) {
    p.set_value();
  } else {
    detail::fulfil(p, [&] { return static_cast<task_state<T>&>(t).value(); });
  }
}

} // namespace detail

/// Suspends the task until `f` is ready; resumes on the loop thread.
template <class T>
detail::future_awaiter<T> operator co_await(future<T>& f) {
  return detail::future_awaiter<T>(f);
}
/// Suspends the task until `f` is ready (a temporary future).
template <class T>
detail::future_awaiter<T> operator co_await(future<T>&& f) {
  return detail::future_awaiter<T>(f);
}

/// Schedules `t` on `loop` from any thread; a future of its result.
/// Throws `simul::error` if the loop is closed. `where` (leave it out) is the
/// call site, named in reports about the task.
template <class T>
future<T> run_coroutine_threadsafe(task<T> t, event_loop& loop,
                                   detail::source_location where = detail::source_location::current()) {
  promise<T> p;
  auto f = p.get_future();
  p.set_running_or_notify_cancel();
  // Loop-thread only: the task once it exists, and a cancel that came first.
  struct cell {
    basic_task_handle task;
    bool cancel_requested = false;
  };
  auto c = std::make_shared<cell>();
  p.set_cancel_hook([&loop, c] {
    try {
      loop.call_soon_threadsafe([c] {
        if (c->task.valid() && !c->task.done()) {
          c->task.cancel();
        } else {
          c->cancel_requested = true;
        }
      });
      return true;
    } catch (...) {
      return false;
    }
  });
  auto start = [&loop, c, p = std::move(p), t = std::move(t), where]() mutable {
    auto h = loop.create_task(std::move(t), {}, where);
    c->task = h;
    if (c->cancel_requested) {
      h.cancel();
    }
    h.add_done_callback([c, p = std::move(p)]() mutable {
      auto& b = c->task.base();
      b.mark_retrieved();
      detail::fulfil_from(p, b);
      c->task = basic_task_handle();
    });
  };
  loop.call_soon_threadsafe(std::move(start), where);
  return f;
}

} // namespace simul
