// Tasks the MPI pool must refuse at compile time, each with a static_assert
// that says why (procpool's check_rejections.cmake compiles this file with
// CONTROL, which must compile, and without, where every "expect:" line must
// be named in an error carrying that text). It also proves the public
// headers need no <mpi.h>: no MPI include directory is given.

#include <simul/mpipool.hpp>

#include <string>
#include <vector>

namespace {
int takes_int(int x) { return x; }
int takes_ptr(const int* p) { return *p; }
std::size_t takes_buffer(simul::shared_buffer b) { return b.size(); }
} // namespace

int main(int argc, char** argv) {
  simul::mpi_pool pool(argc, argv);
  [[maybe_unused]] int local = 3;
  (void)pool.submit(takes_int, 1);
  (void)pool.submit([](int a) { return a; }, 2);
  (void)pool.map(takes_int, std::vector<int>{1});
#ifndef CONTROL
  (void)pool.submit(takes_buffer, simul::shared_buffer(16));  // expect: cannot travel to another rank
  (void)pool.submit([local](int a) { return a + local; }, 1); // expect: captures cannot cross a process boundary
  (void)pool.submit(takes_ptr, &local);                       // expect: raw pointer arguments cannot cross
#endif
  return 0;
}
