#pragma once

// simul::thread_pool: a work-stealing pool of threads with the whole
// concurrent.futures surface.
//
//   simul::thread_pool pool({.workers = 4, .name = "render"});
//   simul::future<int> f = pool.submit([](int x) { return x * x; }, 7);
//   pool.post([] { log("fire and forget"); });
//   std::vector<int> squares = pool.map([](int x) { return x * x; }, numbers, {.chunksize = 64});
//   pool.parallel_for(0, n, [&](int i) { out[i] = work(i); });
//   pool.wait_idle();
//
// The contract:
//
// - `submit(f, args...)` copies (decays) `f` and `args` into the task and
//   returns a `future` of `f(args...)`. An exception from `f` arrives through
//   the future. `post(f, args...)` returns nothing; an exception from it goes
//   to the pool's exception handler (by default printed to stderr with the
//   pool's name) and is counted in `stats().failed`: it never vanishes.
// - Cancelling a future whose task is still queued completes it as cancelled
//   at once (O(1): nothing is searched) and the work never runs; `cancel()`
//   on a task that has started returns false.
// - `get()` / `wait()` on any future from inside a task of this pool run
//   other queued tasks of the pool while they wait, so a task may wait for
//   the tasks it submitted, to any depth, even on a one-thread pool.
// - `shutdown({.wait, .cancel_pending})` stops accepting work (a later
//   `submit` or `post` throws `broken_executor`), optionally completes every
//   queued future as cancelled, and optionally waits for the workers to finish
//   what is left. The destructor is `shutdown({.wait = true})`.
// - An initializer that throws breaks the pool: queued futures fail with
//   `broken_executor` whose `cause()` is the initializer's exception, and so
//   does every later `submit`. The exception handler hears of the break
//   first, before `is_shutdown()` turns true or any future fails.
//
// Scheduling: every worker owns a deque; a task submitted from inside a task
// goes to its worker's deque (newest first, which keeps recursive work hot in
// cache), work from other threads goes to injection lanes (about one per
// core; a thread always uses the same lane, and workers take a lane's tasks
// oldest first, so one worker starts one thread's tasks in that thread's
// order) that workers take from in batches (a fair share, at most 256
// tasks), and an idle worker steals the oldest task of a busy one. An idle
// worker spins for a few microseconds (one at a time), then sleeps on a
// futex: an idle pool uses no CPU. Tasks whose closure fits in 56 bytes are
// stored inline, so `post` allocates nothing and `submit` allocates only the
// future's shared state.
//
// Thread-safety: every member function may be called from any thread at the
// same time, including from inside tasks of this pool or of another pool,
// except where a function says otherwise (`wait_idle` and a waiting
// `shutdown` cannot be called from this pool's own tasks, since they would
// wait for themselves; they throw `simul::error` instead).
//
// Lifetime: the pool must outlive every call into it; futures it returned may
// outlive it (they are complete by then). Tasks must not destroy their own pool.

#include <simul/core/error.hpp>
#include <simul/core/executor.hpp>
#include <simul/core/future.hpp>
#include <simul/core/imap.hpp>
#include <simul/core/map.hpp>
#include <simul/threadpool/detail/pool_task.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul {

namespace detail {
class scheduler;
} // namespace detail

/// How a thread pool is built. Members stay in this order so designated
/// initializers such as `thread_pool({.workers = 2, .name = "io"})` compile.
struct thread_pool_options {
  /// Number of worker threads; 0 means `std::thread::hardware_concurrency()`.
  std::size_t workers = 0;
  /// Deprecated, the old name of `workers` (used when `workers` is 0); kept
  /// for one release. (Not marked `[[deprecated]]`: on a data member that
  /// would warn every program that copies the options.)
  std::size_t threads = 0;
  /// Names the pool in error messages and its threads (as "<name>-<index>").
  std::string name = "simul-pool";
  /// Runs once on every worker thread before it takes any task. If it throws,
  /// the pool breaks (see the file comment).
  std::function<void()> initializer = {};
  /// Receives exceptions from `post`ed tasks (and the error that broke the
  /// pool). Empty means the default: print to stderr with the pool's name.
  std::function<void(std::exception_ptr)> exception_handler = {};
};

/// A snapshot of a pool's counters, each read on its own (they may be
/// slightly out of step with each other while work runs).
struct thread_pool_stats {
  std::size_t workers = 0;     ///< worker threads
  std::uint64_t queued = 0;    ///< tasks waiting in queues (cancelled ones until a worker drops them)
  std::uint64_t running = 0;   ///< tasks running now (nested waits count each level)
  std::uint64_t completed = 0; ///< tasks that finished without an exception
  std::uint64_t failed = 0;    ///< tasks that ended with an exception
  std::uint64_t cancelled = 0; ///< tasks that never ran: cancelled, shut down, or abandoned by a broken pool
  std::uint64_t stolen = 0;    ///< tasks a worker took from another worker's deque
  std::uint64_t submitted = 0; ///< tasks accepted by `submit`, `post`, `map` and `parallel_for`
  /// Deprecated, the old name of `workers`, filled in the same; kept for one
  /// release (not marked `[[deprecated]]`, as in `thread_pool_options`).
  std::size_t threads = 0;
};

/// Options of `parallel_for`.
struct parallel_for_options {
  /// Indices per task; 0 picks about eight tasks per worker.
  std::size_t grain = 0;
};

/// A work-stealing thread pool; see the file comment for the whole contract.
///
/// Thread-safety: all members are safe to call concurrently from any thread.
/// Lifetime: destroying the pool shuts it down and waits for its workers.
class thread_pool {
 public:
  /// Starts `options.workers` workers. Throws `std::system_error` if threads
  /// cannot be made (after stopping the ones already made).
  explicit thread_pool(thread_pool_options options = {});

  /// `shutdown({.wait = true})`. Must not run on one of this pool's workers
  /// (the process is aborted with a message rather than deadlocking).
  ~thread_pool();

  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  /// Queues `f(args...)` and returns a future of its result.
  /// Throws `broken_executor` after `shutdown` or once the pool broke.
  /// Thread-safety: any thread. Lifetime: `f` and `args` are decay-copied.
  template <class F, class... Args>
  requires std::invocable<std::decay_t<F>, std::decay_t<Args>...> future<submit_result_t<F, Args...>>
  submit(F&& f, Args&&... args) {
    using R = submit_result_t<F, Args...>;
    detail::submit_task<R, std::decay_t<F>, std::decay_t<Args>...> task{
        promise<R>(), std::decay_t<F>(std::forward<F>(f)), {std::forward<Args>(args)...}};
    auto result = task.result.get_future();
    enqueue(detail::pool_task(std::move(task)));
    return result;
  }

  /// Queues `f(args...)` with no future. An exception from it goes to the
  /// exception handler. Throws `broken_executor` after `shutdown`.
  /// Thread-safety: any thread. Lifetime: `f` and `args` are decay-copied.
  template <class F, class... Args>
  requires std::invocable<std::decay_t<F>, std::decay_t<Args>...>
  void post(F&& f, Args&&... args) {
    enqueue(detail::pool_task(detail::post_task<std::decay_t<F>, std::decay_t<Args>...>{
        std::decay_t<F>(std::forward<F>(f)), {std::forward<Args>(args)...}}));
  }

  /// Runs `f(item)` for every item, `options.chunksize` items per task, and
  /// returns the results in input order. At most `options.max_inflight`
  /// chunks (0: two per worker) are in flight at once, so a failure stops the
  /// reading of the input early. The first exception (in input
  /// order) is rethrown after the chunks not yet started are cancelled; past
  /// `options.timeout` (for the whole call) the same happens with
  /// `timeout_error`. The engine is `simul::imap_range` (core/imap.hpp).
  /// Thread-safety: any thread, including this pool's tasks.
  template <class F, std::ranges::input_range R>
  requires(std::invocable<std::decay_t<F>&, std::ranges::range_reference_t<R>>) auto map(F&& f, R&& items,
                                                                                         map_options options = {}) {
    return make_imap<true>(std::forward<F>(f), std::forward<R>(items), options,
                           detail::lazy_inflight(options, workers()), "thread_pool::map")
        .to_vector();
  }

  /// Like `map`, but lazy: returns a range that yields results in input
  /// order while reading the input only `options.max_inflight` chunks (0: two
  /// per worker) ahead of the consumer, so an endless or huge input never
  /// fills memory.
  /// Lifetime: an lvalue `items` is referenced and must outlive the result;
  /// an rvalue is moved into it. Destroying the result cancels its pending
  /// chunks and waits for the running ones.
  template <class F, std::ranges::input_range R>
  requires(std::invocable<std::decay_t<F>&, std::ranges::range_reference_t<R>>) auto imap(F&& f, R&& items,
                                                                                          map_options options = {}) {
    return make_imap<true>(std::forward<F>(f), std::forward<R>(items), options,
                           detail::lazy_inflight(options, workers()), "thread_pool::imap");
  }

  /// Like `imap`, but yields results in the order their chunks complete
  /// (multiprocessing's `imap_unordered`).
  template <class F, std::ranges::input_range R>
  requires(std::invocable<std::decay_t<F>&, std::ranges::range_reference_t<R>>) auto imap_unordered(
      F&& f, R&& items, map_options options = {}) {
    return make_imap<false>(std::forward<F>(f), std::forward<R>(items), options,
                            detail::lazy_inflight(options, workers()), "thread_pool::imap_unordered");
  }

  /// Calls `f(i)` for every `i` in [first, last) on the pool, `options.grain`
  /// indices per task, and returns when all are done. The first exception (by
  /// index) is rethrown after the rest were cancelled or finished. Throws
  /// `simul::error` if `first > last`, `broken_executor` after `shutdown`.
  /// Thread-safety: any thread, including this pool's tasks.
  /// Lifetime: `f` is used by reference until the call returns.
  template <std::integral I, class F>
  requires(!std::same_as<I, bool> && std::invocable<F&, I>) void parallel_for(I first, I last, F&& f,
                                                                              parallel_for_options options = {});

  /// Blocks until no task is queued or running.
  /// Throws `simul::error` if called from a task of this pool.
  void wait_idle();

  /// Stops accepting work; see the file comment. Safe to call more than once
  /// and from several threads. With `.wait`, throws `simul::error` if called
  /// from a task of this pool.
  void shutdown(shutdown_options options = {});

  /// True once `shutdown` was called or the pool broke.
  [[nodiscard]] bool is_shutdown() const noexcept;

  /// Replaces the handler that receives exceptions from `post`ed tasks.
  /// Thread-safety: any thread; a handler already running finishes with the
  /// old one. Handlers run on worker threads, possibly several at once.
  void set_exception_handler(std::function<void(std::exception_ptr)> handler);

  /// A snapshot of the counters.
  [[nodiscard]] thread_pool_stats stats() const;

  /// Number of worker threads.
  [[nodiscard]] std::size_t workers() const noexcept;

  /// The old name of `workers()`; kept for one release.
  [[deprecated("use workers()")]] [[nodiscard]] std::size_t size() const noexcept { return workers(); }

  /// The pool's name.
  [[nodiscard]] const std::string& name() const noexcept;

  /// The old name of the default `max_inflight` of `imap` (twice the
  /// number of workers); kept for one release.
  [[deprecated("imap keeps map_options::max_inflight chunks in flight (0: 2 per worker)")]] [[nodiscard]] std::size_t
  lookahead() const noexcept {
    return 2 * workers();
  }

  /// True if the calling thread is one of this pool's workers.
  [[nodiscard]] bool on_worker_thread() const noexcept;

 private:
  template <bool Ordered, class F, class R>
  auto make_imap(F&& f, R&& items, const map_options& options, std::size_t max_inflight, const char* who) {
    using submitter = detail::chunk_submitter<thread_pool, std::decay_t<F>>;
    return imap_range<submitter, std::views::all_t<R>, Ordered>(submitter{this, std::decay_t<F>(std::forward<F>(f))},
                                                                std::views::all(std::forward<R>(items)), options,
                                                                max_inflight, who);
  }

  void enqueue(detail::pool_task&& task);

  std::unique_ptr<detail::scheduler> m_core;
};

static_assert(executor<thread_pool>);

template <std::integral I, class F>
requires(!std::same_as<I, bool> && std::invocable<F&, I>) void thread_pool::parallel_for(I first, I last, F&& f,
                                                                                         parallel_for_options options) {
  if (first > last) {
    throw simul::error("thread_pool::parallel_for: first (" + std::to_string(first) + ") is greater than last (" +
                       std::to_string(last) + ")");
  }
  using U = std::make_unsigned_t<I>;
  const auto count = static_cast<std::uint64_t>(static_cast<U>(last) - static_cast<U>(first));
  if (count == 0) {
    return;
  }
  std::uint64_t grain = options.grain;
  if (grain == 0) {
    grain = std::max<std::uint64_t>(1, count / (8 * std::max<std::size_t>(workers(), 1)));
  }
  auto& fn = f;
  std::vector<future<void>> parts;
  parts.reserve(static_cast<std::size_t>((count + grain - 1) / grain));
  auto settle = [&parts] {
    for (auto& part : parts) {
      part.cancel();
    }
    for (auto& part : parts) {
      part.wait();
    }
  };
  try {
    for (std::uint64_t begin = 0; begin < count; begin += grain) {
      const auto end = std::min(count, begin + grain);
      parts.push_back(submit([&fn, first, begin, end] {
        for (auto k = begin; k < end; ++k) {
          std::invoke(fn, static_cast<I>(static_cast<U>(first) + static_cast<U>(k)));
        }
      }));
    }
  } catch (...) {
    settle();
    throw;
  }
  // Wait in index order; on the first failure cancel what has not started and
  // let the running parts finish, since they use `f` by reference.
  for (auto& part : parts) {
    part.wait();
    if (auto error = part.exception(); error && !part.cancelled()) {
      settle();
      std::rethrow_exception(error);
    }
  }
}

} // namespace simul
