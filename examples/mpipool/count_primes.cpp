// The flagship's prime counting, farmed over the ranks of an MPI job.
//
//   mpirun -n 3 ./mpipool_count_primes            # rank 0 + 2 worker ranks
//   mpirun --hostfile hosts -n 16 ./mpipool_count_primes
//
// Everything before the pool runs on every rank; from the pool on, only rank
// 0 runs this main (the other ranks serve tasks inside the constructor and
// end when the pool shuts down). The same code with a process_pool instead
// of the mpi_pool runs the blocks on one machine's cores.

#include <simul/mpipool.hpp>

#include <cstdio>
#include <vector>

#include "../compare/workloads.hpp"

namespace {

struct block {
  long first = 0;
  long last = 0;
};

long count_block(block b) { return compare::count_primes(b.first, b.last); }

} // namespace

int main(int argc, char** argv) {
  simul::mpi_pool pool(argc, argv); // worker ranks stay in here

  constexpr long limit = 200'000;
  constexpr long span = 10'000;
  std::vector<block> blocks;
  for (long first = 0; first < limit; first += span) {
    blocks.push_back({first, first + span});
  }
  long total = 0;
  for (long primes : pool.map(count_block, blocks, {.chunksize = 2})) {
    total += primes;
  }
  const auto stats = pool.stats();
  pool.shutdown();
  std::printf("primes below %ld: %ld, in %zu blocks on %zu worker ranks (%llu tasks)\n", limit, total, blocks.size(),
              pool.workers(), static_cast<unsigned long long>(stats.completed));
  return total == compare::count_primes(0, limit) ? 0 : 1;
}
