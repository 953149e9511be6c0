// A program whose process_pool with start_method::exec is a global, made by
// a static initializer: the exec'd zygote runs that initializer too, and must
// become the zygote there instead of starting a zygote of its own (which
// would start another, and so on). Also a plain program (not a test
// framework) that links simul the ordinary way, so the library's zygote entry
// must be linked in; and a shared_buffer made by a static initializer that
// runs before the library's own. Prints "ok" and exits 0 when all holds.

#include <simul/procpool.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {
// Initialized before the pool (same file, earlier): the zygote sees it.
const std::vector<int> g_table = {2, 3, 5, 7, 11};
simul::shared_buffer g_buffer(4096); // registered before shared_buffer.cpp's statics could run

int fill(simul::shared_buffer buffer) {
  buffer.as<int>()[0] = 99;
  return static_cast<int>(buffer.size());
}

int table_at(int i) { return g_table.at(static_cast<std::size_t>(i)); }
bool zygote_variable_set(int) { return std::getenv("SIMUL_PROCPOOL_ZYGOTE") != nullptr; }
int parent_of_parent(int) { return static_cast<int>(::getppid()); }

simul::process_pool g_pool({.workers = 1, .start = simul::start_method::exec});
} // namespace

int main() {
  const int sum = g_pool.submit(table_at, 1).get() + g_pool.submit(table_at, 4).get();
  const bool variable = g_pool.submit(zygote_variable_set, 0).get();
  const int zygote = g_pool.submit(parent_of_parent, 0).get(); // a worker's parent
  const int size = g_pool.submit(fill, g_buffer).get();
  if (sum != 14 || variable || zygote != g_pool.zygote_pid() || size != 4096 || g_buffer.as<int>()[0] != 99) {
    std::printf("wrong: sum %d, variable %d, zygote %d vs %d, buffer %d %d\n", sum, variable ? 1 : 0, zygote,
                g_pool.zygote_pid(), size, g_buffer.as<int>()[0]);
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
