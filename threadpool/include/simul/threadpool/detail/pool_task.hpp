#pragma once

// The unit of work a thread pool queues: a move-only callable stored inline.
//
// A queued task is asked to do one of three things: run, be cancelled (the
// pool was shut down with `cancel_pending`), or be abandoned because the pool
// broke. A task made by `submit` owns the promise, so it can complete its
// future in every case; a task made by `post` has no future and simply
// reports what happened. The buffer is sized so that the task object is one
// cache line and a closure of a few pointers plus a promise needs no heap.

#include <simul/core/detail/unique_function.hpp>
#include <simul/core/future.hpp>

#include <exception>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace simul::detail {

enum class task_action : unsigned char {
  run,     ///< run the work now
  cancel,  ///< never run it: the pool cancelled pending work
  abandon, ///< never run it: the pool broke (the reason is passed along)
};

enum class task_outcome : unsigned char { completed, failed, cancelled };

inline constexpr std::size_t k_task_capacity = 56;

/// Called by the pool's worker; exceptions escaping a `run` go to the pool's
/// exception handler (only `post` tasks let them escape).
using pool_task = unique_function<task_outcome(task_action, const std::exception_ptr*), k_task_capacity>;

/// The task behind `submit`: runs `fn(args...)` into a promise.
template <class R, class Fn, class... Args>
struct submit_task {
  promise<R> result;
  Fn fn;
  std::tuple<Args...> args;

  task_outcome operator()(task_action action, const std::exception_ptr* reason) noexcept {
    if (action == task_action::cancel) {
      result.set_cancelled("thread_pool: pending work was cancelled by shutdown");
      return task_outcome::cancelled;
    }
    if (action == task_action::abandon) {
      result.set_exception(*reason);
      return task_outcome::cancelled;
    }
    // A future cancelled while queued completed already: the work never runs.
    if (!result.set_running_or_notify_cancel()) {
      return task_outcome::cancelled;
    }
    try {
      if constexpr (std::is_void_v<R>) {
        std::apply(std::move(fn), std::move(args));
        result.set_value();
      } else {
        result.set_value(std::apply(std::move(fn), std::move(args)));
      }
      return task_outcome::completed;
    } catch (...) {
      result.set_exception(std::current_exception());
      return task_outcome::failed;
    }
  }
};

/// The task behind `post`: no future; an exception escapes to the worker,
/// which hands it to the pool's exception handler.
template <class Fn, class... Args>
struct post_task {
  Fn fn;
  std::tuple<Args...> args;

  task_outcome operator()(task_action action, const std::exception_ptr*) {
    if (action != task_action::run) {
      return task_outcome::cancelled;
    }
    std::apply(std::move(fn), std::move(args));
    return task_outcome::completed;
  }
};

} // namespace simul::detail
