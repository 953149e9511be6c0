#pragma once

// simul::gather: run awaitables concurrently and collect their results in order.
//
// `co_await gather(a(), b(), c())` schedules each `task<T>` as a task at once
// (a `task_handle<T>` is used as it is; any other awaitable, such as
// `q.get()` or `ev.wait()`, runs in a task of its own), waits for all of them, and gives a
// `std::tuple` of their results in argument order (`std::monostate` for a
// `task<void>`); `gather(std::vector<task<T>>)` gives a `std::vector<T>`.
// The rules are asyncio.gather's:
//
// - The first child to fail makes the gather throw that exception at once;
//   the other children are not cancelled and keep running.
// - A child that is cancelled makes the gather throw `cancelled_error`.
// - Cancelling the task that awaits the gather cancels every child that is
//   still running; the gather then throws `cancelled_error`.
// - `gather(return_exceptions, ...)` never throws for a child: each result is
//   an `outcome<T>` holding the value or the exception (a cancelled child's
//   `cancelled_error` included). Cancelling the awaiting task still cancels
//   the children and throws `cancelled_error` once they are all done.
//
// Errors of children nobody looks at after a gather gave up are taken as
// retrieved, as in asyncio.
//
// Thread-safety: loop thread only; `gather` needs a running loop.
// Lifetime: the children belong to the loop; the gather only observes them.

#include <simul/loop/detail/awaitable.hpp>
#include <simul/loop/detail/multi_wait.hpp>
#include <simul/loop/task.hpp>
#include <simul/loop/task_handle.hpp>

#include <array>
#include <exception>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace simul {

/// Tag for the `return_exceptions=True` form of gather.
struct return_exceptions_t {
  explicit return_exceptions_t() = default;
};
inline constexpr return_exceptions_t return_exceptions{};

/// A value or the exception that took its place (gather(return_exceptions, ...)).
///
/// Thread-safety: a plain value. Lifetime: owns the value.
template <class T>
class outcome {
 public:
  outcome(std::exception_ptr error) noexcept : m_error(std::move(error)) {} // NOLINT: converting
  template <class U = T>
  requires(!std::is_void_v<U>) outcome(U value) : m_value(std::move(value)) {} // NOLINT: converting
  outcome() requires std::is_void_v<T> {}

  /// True if the child finished with a value.
  [[nodiscard]] bool has_value() const noexcept { return !m_error; }
  explicit operator bool() const noexcept { return has_value(); }
  /// The value; rethrows the child's exception if it has none.
  decltype(auto) value() & {
    if (m_error) {
      std::rethrow_exception(m_error);
    }
    if constexpr (!std::is_void_v<T>) {
      return (*m_value);
    }
  }
  /// The exception, or null.
  [[nodiscard]] std::exception_ptr error() const noexcept { return m_error; }

 private:
  struct empty {};
  std::exception_ptr m_error;
  std::conditional_t<std::is_void_v<T>, empty, std::optional<T>> m_value;
};

namespace detail {

template <class T>
using result_or_monostate = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class A>
struct handle_of {
  using value = await_result_t<A>; // any other awaitable: wrapped in a task
};
template <class T>
struct handle_of<task<T>> {
  using value = T;
};
template <class T>
struct handle_of<task_handle<T>> {
  using value = T;
};
template <class A>
using awaited_value_t = typename handle_of<std::remove_cvref_t<A>>::value;

template <class A>
inline constexpr bool is_task_or_handle = false;
template <class T>
inline constexpr bool is_task_or_handle<task<T>> = true;
template <class T>
inline constexpr bool is_task_or_handle<task_handle<T>> = true;

/// What gather, wait_for and shield take: a task, a task handle or any awaitable.
template <class A>
concept gatherable = is_task_or_handle<std::remove_cvref_t<A>> || awaitable_object<A>;

// A parameter pack leaves no room for a defaulted call site: the children of
// the variadic gather carry their coroutine function's own place instead.
template <class T>
task_handle<T> to_handle(task<T>& t) {
  const auto where = t.where();
  return create_task(std::move(t), {}, where);
}
template <class T>
task_handle<T> to_handle(task<T>&& t) {
  return to_handle(t);
}
template <class T>
task_handle<T> to_handle(const task_handle<T>& h) {
  return h;
}
/// Any other awaitable runs in a task of its own (moved in if an rvalue).
template <class A>
requires(!is_task_or_handle<std::remove_cvref_t<A>> &&
         awaitable_object<A>) task_handle<await_result_t<A>> to_handle(A&& aw) {
  return create_task(as_task(std::forward<A>(aw)));
}

template <class T>
result_or_monostate<T> take_value(task_handle<T>& h) {
  if constexpr (std::is_void_v<T>) {
    h.result();
    return {};
  } else {
    return h.result();
  }
}

template <class T>
outcome<T> take_outcome(task_handle<T>& h) {
  auto& b = h.base();
  b.mark_retrieved();
  if (auto e = b.error()) {
    return outcome<T>(e);
  }
  if constexpr (std::is_void_v<T>) {
    return outcome<T>();
  } else {
    return outcome<T>(h.result());
  }
}

/// After a gather gave up early, the children still running have nobody to
/// look at their errors: mark them retrieved when they finish.
inline void retrieve_later(std::vector<task_base*>& children) {
  for (auto* c : children) {
    if (!c->done()) {
      c->add_done_callback([h = basic_task_handle(c)] { h.base().mark_retrieved(); });
    } else {
      c->mark_retrieved();
    }
  }
}

/// After the wait: the first failure (plain gather) or a cancellation that
/// went to the children makes the gather throw.
template <bool Settled>
void gather_check(multi_wait& w, std::vector<task_base*>& children) {
  if constexpr (!Settled) {
    if (auto* failed = w.first_failure(); failed != nullptr) {
      retrieve_later(children);
      failed->mark_retrieved();
      std::rethrow_exception(failed->error());
    }
  }
  if (w.cancel_forwarded()) {
    retrieve_later(children);
    // The message given to the awaiting task's cancel() comes out (asyncio).
    const auto* self = current_task_or_null();
    const std::string message = self != nullptr ? self->cancel_message() : std::string();
    throw cancelled_error(message.empty() ? std::string("gather was cancelled") : message);
  }
}

template <class... H>
std::vector<task_base*> bases(H&... hs) {
  return std::vector<task_base*>{&hs.base()...};
}

template <bool Settled, class... Ts>
auto gather_tuple(task_handle<Ts>... hs)
    -> task<std::conditional_t<Settled, std::tuple<outcome<Ts>...>, std::tuple<result_or_monostate<Ts>...>>> {
  auto children = bases(hs...);
  {
    multi_wait w(std::move(children), Settled ? multi_wait::mode::gather_settled : multi_wait::mode::gather);
    try {
      co_await w;
    } catch (...) {
      retrieve_later(w.children());
      throw;
    }
    gather_check<Settled>(w, w.children());
  }
  if constexpr (Settled) {
    co_return std::tuple<outcome<Ts>...>(take_outcome(hs)...);
  } else {
    co_return std::tuple<result_or_monostate<Ts>...>(take_value(hs)...);
  }
}

template <bool Settled, class T>
auto gather_vector(std::vector<task_handle<T>> hs)
    -> task<std::vector<std::conditional_t<Settled, outcome<T>, result_or_monostate<T>>>> {
  std::vector<task_base*> children;
  children.reserve(hs.size());
  for (auto& h : hs) {
    children.push_back(&h.base());
  }
  {
    multi_wait w(std::move(children), Settled ? multi_wait::mode::gather_settled : multi_wait::mode::gather);
    try {
      co_await w;
    } catch (...) {
      retrieve_later(w.children());
      throw;
    }
    gather_check<Settled>(w, w.children());
  }
  std::vector<std::conditional_t<Settled, outcome<T>, result_or_monostate<T>>> out;
  out.reserve(hs.size());
  for (auto& h : hs) {
    if constexpr (Settled) {
      out.push_back(take_outcome(h));
    } else {
      out.push_back(take_value(h));
    }
    // Let the task go while it is in cache (for most children this is the
    // last handle): one pass over a million tasks instead of two.
    h = task_handle<T>();
  }
  co_return out;
}

/// Schedules every task of a range, recording `where` as their creation place.
template <class T>
std::vector<task_handle<T>> schedule_all(std::vector<task<T>> tasks, const source_location& where) {
  std::vector<task_handle<T>> hs;
  hs.reserve(tasks.size());
  for (auto& t : tasks) {
    hs.push_back(create_task(std::move(t), {}, where));
  }
  return hs;
}

} // namespace detail

/// Runs the awaitables concurrently; a tuple of their results in order.
/// Each argument is a `task<T>` (scheduled now), a `task_handle<T>` or any
/// other awaitable, run in a task of its own (an rvalue is moved into it).
/// Throws `simul::error` if no loop is running.
template <class... A>
requires(sizeof...(A) > 0 && (detail::gatherable<A> && ...)) auto gather(A&&... aws) {
  // Braces: the tasks are created left to right, in argument order.
  std::tuple<task_handle<detail::awaited_value_t<A>>...> hs{detail::to_handle(std::forward<A>(aws))...};
  return std::apply([](auto&... h) { return detail::gather_tuple<false>(h...); }, hs);
}

/// gather with return_exceptions: a tuple of `outcome<T>`, never throwing for a child.
template <class... A>
requires(sizeof...(A) > 0 && (detail::gatherable<A> && ...)) auto gather(return_exceptions_t, A&&... aws) {
  std::tuple<task_handle<detail::awaited_value_t<A>>...> hs{detail::to_handle(std::forward<A>(aws))...};
  return std::apply([](auto&... h) { return detail::gather_tuple<true>(h...); }, hs);
}

/// Runs every task of a range concurrently; a vector of results in order.
/// The children's creation place (`where`, leave it out) is gather's call site.
template <class T>
auto gather(std::vector<task<T>> tasks, detail::source_location where = detail::source_location::current()) {
  return detail::gather_vector<false, T>(detail::schedule_all(std::move(tasks), where));
}

/// Waits for every scheduled task of a range; a vector of results in order.
template <class T>
auto gather(std::vector<task_handle<T>> tasks) {
  return detail::gather_vector<false, T>(std::move(tasks));
}

/// gather of a range with return_exceptions: a vector of `outcome<T>`.
template <class T>
auto gather(return_exceptions_t, std::vector<task<T>> tasks,
            detail::source_location where = detail::source_location::current()) {
  return detail::gather_vector<true, T>(detail::schedule_all(std::move(tasks), where));
}

/// gather of scheduled tasks with return_exceptions: a vector of `outcome<T>`.
template <class T>
auto gather(return_exceptions_t, std::vector<task_handle<T>> tasks) {
  return detail::gather_vector<true, T>(std::move(tasks));
}

} // namespace simul
