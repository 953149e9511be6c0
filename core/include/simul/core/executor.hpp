#pragma once

// The executor concept, and the executor that runs work on the spot.
//
// An executor takes a callable and its arguments and returns a `future` of the
// result: `ex.submit(f, args...)`. Every simul executor models it (the inline
// executor, `thread_pool`, `process_pool`, `event_loop`), so code written
// against the concept runs the same work sequentially, on threads, on
// processes or on the loop. `shutdown()` stops an executor from accepting
// work; a `submit` after it throws `broken_executor`.
//
// Arguments are taken by value (decay-copied) and the callable runs later,
// possibly on another thread or in another process: pass values, not
// references to locals.

#include <simul/core/error.hpp>
#include <simul/core/future.hpp>

#include <atomic>
#include <concepts>
#include <functional>
#include <type_traits>
#include <utility>

namespace simul {

/// What `submit(f, args...)` returns a future of.
template <class F, class... Args>
using submit_result_t = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;

/// How an executor shuts down (concurrent.futures' `shutdown(wait, cancel_futures)`).
struct shutdown_options {
  bool wait = true;            ///< block until running and queued work has finished
  bool cancel_pending = false; ///< cancel work that has not started
};

/// Anything that runs `f()` somewhere and hands back a `future` of its result.
template <class E>
concept executor = requires(E& ex, int (*work)()) {
  { ex.submit(work) } -> std::same_as<future<int>>;
  ex.shutdown();
};

/// Runs each task at once on the submitting thread: the sequential baseline
/// of every comparison.
///
/// Thread-safety: `submit` and `shutdown` may be called from any thread; each
/// task runs on the thread that submitted it.
class inline_executor {
 public:
  /// Runs `f(args...)` now and returns a ready future of its outcome.
  /// Throws `broken_executor` after `shutdown()`.
  template <class F, class... Args>
  requires std::invocable<std::decay_t<F>, std::decay_t<Args>...> future<submit_result_t<F, Args...>>
  submit(F&& f, Args&&... args) {
    if (m_shutdown.load(std::memory_order_acquire)) {
      throw broken_executor("inline_executor: submit after shutdown");
    }
    promise<submit_result_t<F, Args...>> p;
    auto result = p.get_future();
    p.set_running_or_notify_cancel();
    detail::fulfil(p, std::decay_t<F>(std::forward<F>(f)), std::decay_t<Args>(std::forward<Args>(args))...);
    return result;
  }

  /// Stops accepting work. Nothing is ever pending, so the options change nothing.
  void shutdown(shutdown_options = {}) noexcept { m_shutdown.store(true, std::memory_order_release); }

  /// True after `shutdown()`.
  [[nodiscard]] bool is_shutdown() const noexcept { return m_shutdown.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> m_shutdown{false};
};

static_assert(executor<inline_executor>);

} // namespace simul
