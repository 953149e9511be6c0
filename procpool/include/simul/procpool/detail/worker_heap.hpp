#pragma once

// The heap policy of a process that runs pool tasks (private to simul): a
// process_pool worker, or an mpi_pool worker rank, with keep_worker_heap.

namespace simul::detail {

/// true: glibc takes big blocks from the heap instead of fresh mappings and
/// keeps up to 256 MiB of freed heap (M_MMAP_MAX = 0, M_TRIM_THRESHOLD), so a
/// big argument lands in memory this process has already touched. false:
/// glibc's default limits again (from then on fixed rather than adjusted as
/// blocks come and go) and the kept heap returned to the system.
void keep_worker_heap(bool keep) noexcept;

} // namespace simul::detail
