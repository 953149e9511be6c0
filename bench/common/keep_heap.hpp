#pragma once

// Keeps freed memory in the benchmark process, for every side alike.
//
// glibc gives the top of its heap back to the kernel as soon as more than
// 128 KiB of it is free, so a side that allocates a million small objects
// faults all of their pages in again on every repetition. On this project's
// virtual machines a page fault costs several microseconds, more than a whole
// tiny task: the faults then decide the result, and which side ran after
// which (and inherited whose heap) decided it again. Raising the trim and
// mmap thresholds keeps what a repetition freed for the next one, so every
// side after its first repetition runs on memory already mapped in.
//
// SIMUL_BENCH_DEFAULT_MALLOC=1 leaves glibc's defaults alone, for the
// cold-memory figures.

#include <malloc.h>

#include <cstdlib>
#include <string_view>

namespace simul::bench {

/// Returns true if the thresholds were raised.
inline bool keep_freed_memory() {
  if (const char* value = std::getenv("SIMUL_BENCH_DEFAULT_MALLOC");
      value != nullptr && std::string_view(value) == "1") {
    return false;
  }
  constexpr int k_largest_mmap_threshold = 32 * 1024 * 1024; // glibc's maximum on 64-bit
  return ::mallopt(M_TRIM_THRESHOLD, -1) == 1 && ::mallopt(M_MMAP_THRESHOLD, k_largest_mmap_threshold) == 1;
}

} // namespace simul::bench
