// A program that already runs threads when it makes its process pool: a
// background thread takes a lock of the program's over and over, and the
// tasks take the same lock. With start_method::fork the zygote would be a
// copy of the program taken at some instant — if the background thread held
// the lock then, it would stay held in every worker and the tasks would hang.
// With start_method::exec the zygote is a fresh exec of the program, entered
// before main: it has no such copy, so the tasks always run.

#include <simul/procpool.hpp>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

namespace {
std::mutex g_settings_mutex;
int g_scale = 3; // set by the program's static initialization; guarded by g_settings_mutex

int scaled(int x) {
  const std::lock_guard<std::mutex> lock(g_settings_mutex);
  return x * g_scale;
}
} // namespace

int main() {
  std::atomic<bool> stop{false};
  std::thread reloader([&] { // holds the lock most of the time
    while (!stop) {
      const std::lock_guard<std::mutex> lock(g_settings_mutex);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });

  simul::process_pool procs(
      {.workers = 2, .task_timeout = std::chrono::seconds(10), .start = simul::start_method::exec});
  const std::vector<int> results = procs.map(scaled, std::vector<int>{1, 2, 3, 4});
  stop = true;
  reloader.join();

  std::printf("results:");
  for (const int r : results) {
    std::printf(" %d", r);
  }
  std::printf("\nthe zygote is pid %d, a fresh exec of this program\n", procs.zygote_pid());
}
