#pragma once

// Any awaitable as a task: what lets wait_for, timeout, gather and shield
// take a lock's acquire(), a sleep, a queue's get(), a stream read or a
// simul::future, as asyncio takes any awaitable.
//
// `await_result_t<A>` is what `co_await` on an `A` gives; `as_task(aw)` is a
// lazy `task<that>` that awaits `aw`. An rvalue awaitable is moved into the
// task's frame (so the task may outlive the expression that made it); an
// lvalue is awaited where it is, and must outlive the task.
//
// Thread-safety: loop thread only. Lifetime: see above.

#include <simul/loop/task.hpp>

#include <type_traits>
#include <utility>

namespace simul::detail {

struct not_awaitable {};

template <class A>
struct await_result {
  static auto deduce() {
    if constexpr (requires(A & a) { a.operator co_await(); }) {
      return std::type_identity<decltype(std::declval<A&>().operator co_await().await_resume())>{};
    } else if constexpr (requires(A && a) { operator co_await(std::move(a)); }) {
      return std::type_identity<decltype(operator co_await(std::declval<A&&>()).await_resume())>{};
    } else if constexpr (requires(A & a) {
                           a.await_ready();
                           a.await_resume();
                         }) {
      return std::type_identity<decltype(std::declval<A&>().await_resume())>{};
    } else {
      return not_awaitable{};
    }
  }
};

/// True if `co_await` takes an `A`.
template <class A>
concept awaitable_object = !std::is_same_v<decltype(await_result<std::remove_cvref_t<A>>::deduce()), not_awaitable>;

/// What `co_await` on an `A` gives (a reference result is taken by value).
template <awaitable_object A>
using await_result_t = std::remove_cvref_t<typename decltype(await_result<std::remove_cvref_t<A>>::deduce())::type>;

template <class A>
inline constexpr bool is_lazy_task = false;
template <class T>
inline constexpr bool is_lazy_task<task<T>> = true;

/// Awaits an awaitable moved into the frame.
template <class R, class A>
task<R> await_owned(A aw) {
  if constexpr (std::is_void_v<R>) {
    co_await std::move(aw);
  } else {
    co_return co_await std::move(aw);
  }
}

/// Awaits an awaitable the caller keeps alive.
template <class R, class A>
task<R> await_borrowed(A* aw) {
  if constexpr (std::is_void_v<R>) {
    co_await *aw;
  } else {
    co_return co_await *aw;
  }
}

/// A lazy task that awaits `aw` (see the file comment).
template <class A>
auto as_task(A&& aw) {
  using R = await_result_t<A>;
  if constexpr (std::is_lvalue_reference_v<A>) {
    return await_borrowed<R>(&aw);
  } else {
    return await_owned<R, std::remove_cvref_t<A>>(std::move(aw));
  }
}

} // namespace simul::detail
