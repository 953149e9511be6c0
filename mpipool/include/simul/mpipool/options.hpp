#pragma once

// The knobs of an MPI pool.
//
// Members stay in this order so designated initializers work:
// `simul::mpi_pool pool(argc, argv, {.pipeline_depth = 4, .isolate = true});`.
// Every duration uses 0 for "none".
//
// Thread-safety: plain values. Lifetime: copied into the pool at construction.

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace simul {

/// How an `mpi_pool` is built. Only rank 0's options count: rank 0 sends the
/// worker ranks what they need when the pool opens.
struct mpi_pool_options {
  /// Tasks each worker rank may hold at once (at least 1): the one it runs
  /// and those sent ahead, waiting in its MPI queue, so a worker never waits
  /// for rank 0 between two tasks. A task sent ahead counts as started (it
  /// can no longer be cancelled).
  std::size_t pipeline_depth = 16;
  /// Each worker rank runs its tasks in a local `process_pool`: a task that
  /// crashes its process fails with `mpi_worker_crashed` and the rank goes
  /// on serving. Without it, a crashing task ends the whole MPI job (MPI's
  /// rule: one process dies, mpirun ends them all).
  bool isolate = false;
  /// With `isolate`: the local pool's worker processes per rank. 1 keeps one
  /// task running per rank, as without `isolate`.
  std::size_t isolate_workers = 1;
  /// With `isolate`: a task still running after this long is killed with its
  /// local worker and fails with `timeout_error` (0: no limit).
  /// `submit(task_options{...}, ...)` overrides it. Without `isolate` a
  /// limit cannot be enforced, and the constructor refuses one.
  std::chrono::nanoseconds task_timeout{0};
  /// After `shutdown()`, the worker ranks wait for the next `mpi_pool` rank 0
  /// builds instead of ending; they end when rank 0's process exits. Off:
  /// they end at shutdown (their exit status is 0).
  bool keep_ranks = false;
  /// With `isolate`: how long a worker rank's local pool gives running tasks
  /// at shutdown before it kills them.
  std::chrono::nanoseconds shutdown_grace = std::chrono::seconds(2);
  /// The process that runs the tasks on each worker rank (the rank itself,
  /// or with `isolate` its local workers) takes big blocks from its heap
  /// instead of fresh mappings, and keeps up to 256 MiB of freed heap for
  /// the next task, as `process_pool_options::keep_worker_heap` does. A big
  /// argument then lands in memory the rank has already touched (M4 in
  /// docs/benchmarks.md has a row with it), at the price of resident memory
  /// each rank keeps while the pool is open. Off by default.
  bool keep_worker_heap = false;
};

/// How rank `r`'s steady clock relates to rank 0's, as the handshake
/// estimated it from a few ping exchanges (the one with the shortest round
/// trip): `offset` = rank r's clock - rank 0's, wrong by at most half of
/// `round_trip`. Traces move a rank's slices onto rank 0's clock by `offset`
/// unless `same_clock`: a rank on rank 0's host (the same kernel boot) shares
/// its CLOCK_MONOTONIC exactly.
struct mpi_clock_estimate {
  std::chrono::nanoseconds offset{0};
  std::chrono::nanoseconds round_trip{0};
  bool same_clock = false;
};

/// Counters of what an MPI pool has done (a snapshot).
struct mpi_pool_stats {
  std::uint64_t submitted = 0; ///< tasks accepted
  std::uint64_t completed = 0; ///< tasks that came back with a value or an exception
  std::uint64_t crashed = 0;   ///< tasks whose local worker died (`isolate`)
  std::uint64_t timed_out = 0; ///< tasks killed at their deadline (`isolate`)
  std::uint64_t cancelled = 0; ///< tasks cancelled before they were sent
  std::uint64_t in_flight = 0; ///< tasks sent and not yet answered
};

} // namespace simul
