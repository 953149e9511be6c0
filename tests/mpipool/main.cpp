// The MPI tests' main: every rank runs it. The first pool sends the worker
// ranks into their serving loop (they never come back); keep_ranks makes
// them wait between the pools the tests build one after another on rank 0,
// and rank 0's exit sends them home.

#include <simul/mpipool.hpp>

#include <gtest/gtest.h>

#include "mpipool_test.hpp"

int main(int argc, char** argv) {
  {
    simul::mpi_pool first(argc, argv, {.keep_ranks = true}); // worker ranks stay in here
    simul_test::job_size = first.size();
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
