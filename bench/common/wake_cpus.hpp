#pragma once

// Every CPU busy for a moment before a measurement, on every side alike.
//
// Some virtual machines let the host run all of a guest's vCPUs on one
// physical core while the guest is mostly single-threaded (this one boots
// with sched_vcpu_pack). A single-threaded peer (a Python interpreter) run
// just before a parallel measurement then leaves it on one core: measured
// here, two threads of spinning right after a Python busy loop ran 1.18×
// faster than one instead of 1.9×, and a process pool's round trip took
// 150 µs instead of 20 µs. Keeping every CPU busy for a few hundred
// milliseconds brings the vCPUs back before each side is measured.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace simul::bench {

inline void wake_all_cpus(std::chrono::milliseconds how_long = std::chrono::milliseconds(300)) {
  const unsigned n = std::max(1U, std::thread::hardware_concurrency());
  const auto until = std::chrono::steady_clock::now() + how_long;
  std::vector<std::thread> spinners;
  for (unsigned i = 0; i < n; ++i) {
    spinners.emplace_back([until] {
      while (std::chrono::steady_clock::now() < until) {
      }
    });
  }
  for (auto& t : spinners) {
    t.join();
  }
}

} // namespace simul::bench
