#pragma once

// The two workloads of the comparison, as plain functions so that every
// executor — the process pool included — can run them.
//
// cpu: count the primes in a range by trial division (pure computation, no
//      memory traffic to speak of), one range per task.
// io:  wait for a fixed time, standing in for a request to a slow service:
//      the thread is blocked and uses no CPU.

#include <chrono>
#include <thread>

namespace compare {

/// Primes in [first, last) by trial division.
inline long count_primes(long first, long last) {
  long count = 0;
  for (long n = first < 2 ? 2 : first; n < last; ++n) {
    bool prime = true;
    for (long d = 2; d * d <= n; ++d) {
      if (n % d == 0) {
        prime = false;
        break;
      }
    }
    count += prime ? 1 : 0;
  }
  return count;
}

/// Blocks the calling thread for `milliseconds`, like a blocking I/O call.
inline int blocking_wait(int milliseconds) {
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
  return milliseconds;
}

/// The sizes of one run.
struct sizes {
  int cpu_tasks;       ///< ranges to search
  long cpu_span;       ///< numbers per range
  long cpu_base;       ///< where the first range starts
  int io_tasks;        ///< waits
  int io_milliseconds; ///< length of each wait
};

inline constexpr sizes quick_sizes{16, 60'000, 1'000'000, 64, 20};
inline constexpr sizes full_sizes{32, 120'000, 1'000'000, 200, 20};
/// For the test that runs the program: every path, in a second or two.
inline constexpr sizes tiny_sizes{4, 5'000, 1'000'000, 8, 5};

} // namespace compare
