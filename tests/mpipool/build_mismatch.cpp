// One rank claims another build: rank 0's pool must refuse with a clear
// mpi_error naming that rank, and no task may run. Prints "PASS" on success.

#include <simul/mpipool.hpp>

#include <mpi.h>

#include <cstdio>
#include <string>

namespace simul::detail {
void fake_build_id_for_tests(const std::string& id);
} // namespace simul::detail

int main(int argc, char** argv) {
  int rank = -1;
  int provided = 0; // the program initialises MPI itself: the pool must not do it again
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 2) {
    simul::detail::fake_build_id_for_tests("build-id:0000000000000000000000000000000000000000");
  }
  int status = 1;
  try {
    simul::mpi_pool pool(argc, argv);
    std::puts(rank == 0 ? "FAIL: rank 0 got a pool" : "FAIL: a worker rank got out of its constructor");
  } catch (const simul::mpi_error& e) {
    const std::string text = e.what();
    if (rank == 0) {
      const bool names_rank =
          text.find("rank 2") != std::string::npos && text.find("another build") != std::string::npos;
      std::printf("%s: %s\n", names_rank ? "PASS" : "FAIL", e.what());
      status = names_rank ? 0 : 1;
    } else {
      status = text.find("another build") != std::string::npos ? 0 : 1;
    }
  }
  MPI_Finalize();
  return status;
}
