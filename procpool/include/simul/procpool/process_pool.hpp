#pragma once

// simul::process_pool: run plain functions in forked worker processes that may
// crash without taking the pool down (multiprocessing.Pool and
// concurrent.futures.ProcessPoolExecutor, minus their hangs).
//
//   int square(int x) { return x * x; }
//   simul::process_pool procs({.workers = 2, .task_timeout = 2s});
//   simul::future<int> f = procs.submit(square, 7);       // 49
//   std::vector<int> all = procs.map(square, numbers, {.chunksize = 256});
//
// The contract:
// - Creating a pool starts a *zygote* at once, before the pool starts any
//   thread of its own. Every worker, and every replacement, is forked from
//   that zygote, which has one thread. With `start_method::fork` (the
//   default) the zygote is forked from the program: workers see the program's
//   memory as it was when the pool was made, including any lock another
//   thread held at that instant (a task that takes it hangs) — make the pool
//   before starting threads. With `start_method::exec` the zygote is a fresh
//   exec of `/proc/self/exe` that becomes the zygote before `main` (the
//   program's static initializers run in it, `main` never does): it inherits
//   no lock, workers see the memory the static initializers left, and tasks
//   must be functions of the executable (`code_address_error` otherwise).
// - A task is a plain function or a captureless lambda, plus arguments that are
//   values. Captures, raw pointers, references a worker could not write back
//   through, and types with no way across the boundary are compile errors that
//   say so. Trivially copyable values travel as bytes; strings, containers,
//   optional / variant / tuple / pair and types with `serialize(Archive&)` go
//   through cereal; contiguous payloads above `shm_threshold` go through a memfd.
// - Each worker has its own socketpair to the parent: no shared queue or lock
//   a dying worker could corrupt. A worker that dies fails only the task it
//   held, with `worker_crashed` (pid, signal or exit status, the task); a
//   replacement is forked and queued work goes on. More than `restart_limit`
//   deaths within `restart_window` break the pool (`broken_executor`).
// - A task past its timeout is killed with its worker and fails with
//   `timeout_error`. An exception in a task arrives as `remote_error` carrying
//   the exception's type name and `what()`. A result that cannot be serialized
//   is an error, never a hang; a corrupt message from a worker counts as that
//   worker's crash.
// - Workers ignore SIGINT (Ctrl-C is the parent's decision) and die with
//   SIGKILL if the zygote dies (PR_SET_PDEATHSIG); the zygote kills and reaps
//   every worker when the parent goes away; the parent reaps the zygote.
//
// Thread-safety: every member function may be called from any thread at once,
// except that the destructor must not race with anything. Futures complete on
// the pool's I/O thread, so `then` / `on_ready` callbacks run there: keep them
// short, and never call `shutdown({.wait = true})` from one (it throws).
// Lifetime: the destructor cancels queued work, gives running tasks
// `shutdown_grace`, then sends SIGTERM, waits `shutdown_grace` again, then
// SIGKILL; every future it leaves is complete. No process outlives the pool.

#include <simul/core/executor.hpp>
#include <simul/core/future.hpp>
#include <simul/core/map.hpp>
#include <simul/core/wait.hpp>
#include <simul/procpool/detail/submit.hpp>
#include <simul/procpool/detail/task.hpp>
#include <simul/procpool/options.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul {

/// Counters of what a pool has done (a snapshot).
struct process_pool_stats {
  std::uint64_t submitted = 0; ///< tasks accepted
  std::uint64_t completed = 0; ///< tasks that came back with a value or an exception
  std::uint64_t crashed = 0;   ///< workers that died unexpectedly while holding a task or idle
  std::uint64_t timed_out = 0; ///< tasks killed at their deadline
  std::uint64_t recycled = 0;  ///< workers retired by max_tasks_per_child
  std::uint64_t spawned = 0;   ///< workers forked from the zygote, first ones included
};

namespace detail {
namespace procpool {
class io_loop;
} // namespace procpool

} // namespace detail

namespace detail {
template <class Pool, class Fn>
struct message_chunk_submitter;
} // namespace detail

/// A pool of forked worker processes. Models `simul::executor`.
///
/// Thread-safety and Lifetime: see the file comment.
class process_pool {
 public:
  /// Starts the zygote (`options.start`), then the I/O thread, which has it
  /// fork the workers. Throws `simul::error` if a fork, a spawn or a socket
  /// cannot be made, or an exec'd zygote ends before it is ready or runs
  /// another build of the program; `code_address_error` if, with
  /// `start_method::exec`, the initializer is not in the executable.
  explicit process_pool(process_pool_options options = {});
  ~process_pool();
  process_pool(const process_pool&) = delete;
  process_pool& operator=(const process_pool&) = delete;

  /// Runs `fn(args...)` in a worker and returns a future of the result.
  /// Throws `broken_executor` after `shutdown()` or once the pool broke;
  /// with `start_method::exec`, `code_address_error` if `fn` is not in the
  /// executable (nothing is queued). Thread-safety: any thread.
  template <class F, class... Args>
  requires(!std::is_same_v<std::remove_cvref_t<F>, task_options>) auto submit(F&& fn, Args&&... args) {
    return submit_with(std::chrono::nanoseconds{0}, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// `submit` with per-task options (a timeout of its own).
  template <class F, class... Args>
  auto submit(const task_options& options, F&& fn, Args&&... args) {
    return submit_with(options.timeout, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// `fn(item)` for every item, in chunks of `chunksize` items per task;
  /// results in input order. Every chunk is submitted at once unless
  /// `max_inflight` bounds them. The first exception in input order is
  /// rethrown after the chunks not yet started are cancelled; past `timeout`,
  /// `timeout_error` likewise. Thread-safety: any thread.
  template <class F, std::ranges::input_range R>
  auto map(F&& fn, R&& items, map_options options = {});

  /// A lazy `map`: a range whose iteration submits chunks ahead (at most
  /// `max_inflight`) and yields results in input order.
  /// Lifetime: an lvalue range must outlive the returned range; an rvalue is moved in.
  template <class F, std::ranges::input_range R>
  auto imap(F&& fn, R&& items, imap_options options = {});

  /// Like `imap`, but yields results in the order they complete.
  template <class F, std::ranges::input_range R>
  auto imap_unordered(F&& fn, R&& items, imap_options options = {});

  /// Stops accepting work. With `wait`, blocks until queued and running work
  /// is done and the workers have exited; with `cancel_pending`, queued work
  /// completes as cancelled first. Idempotent. Throws `simul::error` if called
  /// with `wait` from a callback running on the pool's own I/O thread.
  void shutdown(shutdown_options options = {});

  /// True after `shutdown()` (or once the pool broke).
  [[nodiscard]] bool is_shutdown() const noexcept;

  /// The number of workers the pool keeps alive (as `mpi_pool::workers()`).
  [[nodiscard]] std::size_t workers() const noexcept;

  /// The former spelling of `workers()`.
  [[deprecated("use workers()")]] [[nodiscard]] std::size_t worker_count() const noexcept;

  /// Counters; see `process_pool_stats`.
  [[nodiscard]] process_pool_stats stats() const;

  /// The process ids of the live workers (for tests and tooling).
  [[nodiscard]] std::vector<int> worker_pids() const;

  /// The zygote's process id (-1 once it is gone).
  [[nodiscard]] int zygote_pid() const noexcept;

  /// The options the pool was built with (workers resolved).
  [[nodiscard]] const process_pool_options& options() const noexcept;

 private:
  template <class Pool, class Fn>
  friend struct detail::message_chunk_submitter;

  template <class F, class... Args>
  auto submit_with(std::chrono::nanoseconds timeout, F&& fn, Args&&... args) {
    using Fn = std::decay_t<F>;
    static_assert(detail::check_task<Fn, std::decay_t<Args>...>());
    detail::task_request request;
    request.payload.shm_threshold = options().shm_threshold;
    request.timeout = timeout;
    request.naming = code_naming();
    auto result =
        detail::pack_call(request, detail::name_code(&detail::run_call<Fn, std::decay_t<Args>...>, request.naming),
                          static_cast<const Fn&>(fn), args...);
    enqueue(std::move(request));
    return result;
  }

  template <class F, class Item>
  auto submit_chunk(const F& fn, const std::vector<Item>& chunk) {
    using Fn = std::decay_t<F>;
    detail::task_request request;
    request.payload.shm_threshold = options().shm_threshold;
    request.naming = code_naming();
    auto result = detail::pack_chunk(request, detail::name_code(&detail::run_chunk<Fn, Item>, request.naming),
                                     static_cast<const Fn&>(fn), chunk);
    enqueue(std::move(request));
    return result;
  }

  void enqueue(detail::task_request&& request);

  /// How this pool's messages name code (from `options().start`).
  [[nodiscard]] detail::code_naming code_naming() const noexcept;

  std::unique_ptr<detail::procpool::io_loop> m_loop;
};

static_assert(executor<process_pool>);

} // namespace simul

// map, imap and imap_unordered are defined with their chunk submitter.
#include <simul/procpool/imap.hpp>
