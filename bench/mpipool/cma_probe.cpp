// Does Open MPI's shared-memory transport's single-copy mechanism (CMA:
// process_vm_readv) work here? Run as `mpirun -n 2 --mca
// btl_vader_single_copy_mechanism cma cma_probe`: rank 0 sends rank 1 a
// message big enough for the single-copy path. Exit status 0: it works;
// where a container forbids it, the transfer fails and the job ends non-zero.
// run_bench.sh and bench/run use CMA only when this passes.

#include <mpi.h>

#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::vector<char> buffer(std::size_t{1} << 20, 1);
  int ok = 1;
  if (rank == 0) {
    MPI_Send(buffer.data(), static_cast<int>(buffer.size()), MPI_BYTE, 1, 0, MPI_COMM_WORLD);
  } else if (rank == 1) {
    MPI_Recv(buffer.data(), static_cast<int>(buffer.size()), MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    ok = buffer.back() == 1 ? 1 : 0;
  }
  MPI_Finalize();
  return ok == 1 ? 0 : 1;
}
