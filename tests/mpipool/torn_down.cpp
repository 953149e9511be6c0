// A task that crashes its rank without isolate: MPI's rule ends the whole
// job. Rank 0 must not hang: mpirun names the rank and the signal and sends
// rank 0 SIGTERM. This program says what it saw; ctest checks mpirun's words
// and that rank 0 never got past the crashed task's future.

#include <simul/mpipool.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

namespace {
int crash(int) {
  std::signal(SIGSEGV, SIG_DFL); // a real crash, not a sanitizer's report of one
  std::raise(SIGSEGV);
  return 0;
}

void on_sigterm(int) {
  static const char text[] = "rank 0 got SIGTERM from mpirun\n";
  (void)!::write(2, text, sizeof text - 1);
  std::_Exit(143);
}
} // namespace

int main(int argc, char** argv) {
  simul::mpi_pool pool(argc, argv);
  std::signal(SIGTERM, on_sigterm);
  auto result = pool.submit(crash, 1);
  result.wait();
  std::puts("rank 0 got past the crash (it must not)");
  return 0;
}
