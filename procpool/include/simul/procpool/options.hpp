#pragma once

// The knobs of a process pool, and of one task.
//
// Options structs keep their members in this order so designated initializers
// work: `simul::process_pool procs({.workers = 2, .task_timeout = 200ms});`.
// Every duration uses 0 (or `no_timeout` where stated) for "none".
//
// Thread-safety: plain values. Lifetime: copied into the pool at construction.

#include <simul/core/imap.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace simul {

/// How a `process_pool` starts its zygote, the process every worker is forked
/// from (multiprocessing's start methods; docs/procpool.md, "Start methods").
enum class start_method : std::uint8_t {
  /// The zygote is forked from the program when the pool is made. Cheapest,
  /// and a task may be any function (one in a shared library too), but the
  /// zygote inherits every lock another thread of the program holds at that
  /// instant: make the pool before starting threads.
  fork,
  /// The zygote is a fresh exec of the program (`/proc/self/exe`) that turns
  /// into the zygote before `main` runs, like multiprocessing's `forkserver`:
  /// it inherits no lock and no memory. Workers see the program's memory as
  /// its static initializers left it, not as it is when the pool is made. A
  /// task (and the initializer) must be a function of the executable itself:
  /// anything else is `code_address_error`.
  exec,
};

/// How a `process_pool` is built.
struct process_pool_options {
  /// Worker processes (0: one per online CPU).
  std::size_t workers = 0;
  /// A worker is replaced after this many tasks (0: never). Recycling never
  /// loses or stalls queued work: the replacement is forked before the old
  /// worker is told to leave.
  std::size_t max_tasks_per_child = 0;
  /// A task still running after this long is killed with its worker and fails
  /// with `timeout_error` (0: no limit). `submit(task_options{...}, ...)` overrides it.
  std::chrono::nanoseconds task_timeout{0};
  /// Runs once in every worker before its first task (a plain function: it
  /// crosses fork; with `start_method::exec`, one of the executable). If it
  /// throws, the pool breaks with `broken_executor` whose `cause()` is the
  /// `remote_error`.
  void (*initializer)() = nullptr;
  /// Contiguous payloads (std::string, std::vector of trivially copyable
  /// values) of at least this many bytes travel through a memfd instead of the
  /// socket.
  std::size_t shm_threshold = std::size_t{1} << 20;
  /// Crash-loop guard: more than `restart_limit` unexpected worker deaths within
  /// `restart_window` break the pool (`broken_executor`) instead of forking forever.
  std::size_t restart_limit = 50;
  std::chrono::nanoseconds restart_window = std::chrono::seconds(1);
  /// The destructor's bound: running tasks get this long to finish, then their
  /// workers get SIGTERM, and this long again before SIGKILL.
  std::chrono::nanoseconds shutdown_grace = std::chrono::seconds(2);
  /// Tasks a worker may hold at once (at least 1): the one it runs and those
  /// sent ahead, which wait in its socket. Everything queued for a worker
  /// leaves in one write, so a deep pipeline makes tiny tasks cheap; a worker
  /// whose last task took over 1 ms is sent at most one ahead. A task sent
  /// ahead counts as started (it can no longer be cancelled), and if the
  /// worker dies, the tasks behind the one it was running go back to the
  /// front of the queue.
  std::size_t pipeline_depth = 32;
  /// Workers take big blocks from their heap instead of fresh mappings, and
  /// keep up to 256 MiB of freed heap for their next task (glibc:
  /// M_MMAP_MAX = 0, M_TRIM_THRESHOLD = 256 MiB). Big arguments then land in
  /// memory that is already mapped — a 64 MiB round trip gets about a third
  /// faster — at the price of resident memory that a worker keeps until it
  /// is recycled (`max_tasks_per_child`), and of fragmentation: a big block
  /// freed below a live one stays with the worker. Off by default.
  bool keep_worker_heap = false;
  /// A worker that has answered and finds no next task keeps looking at its
  /// socket for this long before it sleeps, giving its CPU to anything else
  /// runnable between looks (`sched_yield`). A caller that submits one task
  /// at a time then reaches an awake worker: one wake-up fewer per round
  /// trip, about 10 µs on a virtual machine. 0: sleep at once.
  std::chrono::microseconds worker_spin{50};
  /// How the zygote is started (see `start_method`).
  start_method start = start_method::fork;
};

/// Per-task settings for `process_pool::submit(task_options, fn, args...)`.
struct task_options {
  /// Overrides the pool's `task_timeout` for this task (0: use the pool's;
  /// `std::chrono::nanoseconds::max()`: no limit).
  std::chrono::nanoseconds timeout{0};
};

// `imap_options` (chunksize, timeout, max_inflight) is core's `map_options`
// (<simul/core/imap.hpp>), shared by every pool.

} // namespace simul
