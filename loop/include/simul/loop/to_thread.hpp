#pragma once

// simul::to_thread: run a blocking function on a thread and await it.
//
// `co_await to_thread(f, args...)` is asyncio's `await asyncio.to_thread(f,
// *args)`: `f(args...)` runs on the default thread pool while the loop goes
// on with its other tasks, and the awaiting task resumes on the loop thread
// with the result (or the exception `f` threw). It is the way to call a
// blocking API — a database driver, a legacy library, a file system call the
// loop does not wrap — from a coroutine without stalling the loop.
//
// The default pool is created on first use with min(32, cores + 4) threads,
// as Python's default executor, and lives until the program exits. To choose
// the threads yourself, submit to your own pool and await the future, or use
// `loop.run_in_executor(pool, f, args...)`.
//
// Cancelling the awaiting task cancels the future: a call still queued never
// runs; one already running finishes on its thread and its result is dropped
// (a thread cannot be interrupted).
//
// Thread-safety: `to_thread` may be called from any thread; the returned
// future is awaited like any other (see bridge.hpp). Lifetime: arguments are
// copied (or moved) into the call, as with `thread_pool::submit`. `f` runs in
// a copy of the caller's context (context_var values), as asyncio's does.

#include <simul/loop/bridge.hpp>
#include <simul/threadpool/thread_pool.hpp>

#include <algorithm>
#include <thread>
#include <utility>

namespace simul {

/// The thread pool behind `to_thread`, made on first use.
///
/// Thread-safety: any thread. Lifetime: until the program exits; its
/// destructor waits for calls still running.
inline thread_pool& default_thread_pool() {
  static thread_pool pool({.workers = std::min<std::size_t>(32, std::max(1U, std::thread::hardware_concurrency()) + 4),
                           .name = "simul-to-thread"});
  return pool;
}

/// Runs `f(args...)` on the default thread pool; `co_await` the result.
template <class F, class... Args>
[[nodiscard]] auto to_thread(F&& f, Args&&... args) {
  // In a copy of the caller's context_var values, as asyncio's to_thread.
  return default_thread_pool().submit(detail::with_current_context(std::forward<F>(f)), std::forward<Args>(args)...);
}

} // namespace simul
