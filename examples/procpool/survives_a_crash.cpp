// CPU work on a process pool that survives a crashing worker.
//
// Count the primes below 200,000 in 20 blocks of 10,000 numbers, on 2 worker
// processes. One block hits a "bug" that kills its worker with SIGSEGV. The
// pool fails only that block's future (worker_crashed), forks a replacement
// from its zygote, and every other block completes; the program then
// recomputes the lost block and prints the right total.
//
//   parent ──fork──> zygote ──fork──> worker A: block 0, 2, 4, ...
//     │                  └──fork──> worker B: block 1, 3, ... 7 (SIGSEGV)
//     │                  └──fork──> worker B': block 9, 11, ...   (replacement)
//     └─ futures: 19 values + 1 worker_crashed ─> retry block 7 ─> total

#include <simul/procpool.hpp>

#include <csignal>
#include <cstdio>
#include <vector>

namespace {

constexpr int k_block = 10000;
constexpr int k_blocks = 20;
constexpr int k_buggy_block = 7;

bool is_prime(int n) {
  if (n < 2) {
    return false;
  }
  for (int d = 2; d * d <= n; ++d) {
    if (n % d == 0) {
      return false;
    }
  }
  return true;
}

// The unit of work: a plain function, so it can cross the process boundary.
int count_primes(int block, bool trip_the_bug) {
  if (trip_the_bug && block == k_buggy_block) {
    std::signal(SIGSEGV, SIG_DFL); // (so that a sanitizer build dies the same way)
    std::raise(SIGSEGV);           // a bug in native code: the worker dies
  }
  int count = 0;
  for (int n = block * k_block; n < (block + 1) * k_block; ++n) {
    count += is_prime(n) ? 1 : 0;
  }
  return count;
}

} // namespace

int main() {
  simul::process_pool procs({.workers = 2});

  std::vector<simul::future<int>> blocks;
  for (int b = 0; b < k_blocks; ++b) {
    blocks.push_back(procs.submit(count_primes, b, true));
  }

  int total = 0;
  int lost = 0;
  for (int b = 0; b < k_blocks; ++b) {
    try {
      total += blocks[b].get();
    } catch (const simul::worker_crashed& crash) {
      std::printf("block %d lost: %s\n", b, crash.what());
      ++lost;
      total += procs.submit(count_primes, b, false).get(); // the pool is still serving
    }
  }
  const auto stats = procs.stats();
  std::printf("workers forked: %llu, crashed: %llu, tasks completed: %llu\n",
              static_cast<unsigned long long>(stats.spawned), static_cast<unsigned long long>(stats.crashed),
              static_cast<unsigned long long>(stats.completed));
  std::printf("primes below %d: %d (%d block lost to a crash, recomputed)\n", k_block * k_blocks, total, lost);
  return lost == 1 ? 0 : 1;
}
