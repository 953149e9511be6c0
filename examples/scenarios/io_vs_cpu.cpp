// io_vs_cpu: the decision tree of the notes, as a program with measured numbers.
//
//                          concurrency
//           ┌─────────────────────┼──────────────────────┐
//      CPU-bound work     blocking I/O calls      many waits
//      processes          threads                 the event loop
//      (or threads:       (a waiting thread       (one thread, thousands
//       C++ has no GIL)    costs no CPU)           of coroutines)
//
// Each branch runs its workload the plain way (one thing after another) and
// the recommended way, and prints both times and the speedup:
//
//   cpu    count primes in 16 ranges     sequential | thread_pool | process_pool
//   io     48 blocking 20 ms calls       sequential | thread_pool(16 threads)
//   waits  2000 waits of 20 ms           thread_pool(16 threads) | event loop
//
// In Python the CPU branch needs processes because of the GIL; in C++ the
// threads are parallel too, and the process pool is what you pick for
// isolation: a crashing task takes down only its worker.

#include <simul/loop.hpp>
#include <simul/procpool.hpp>
#include <simul/threadpool.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

long count_primes(long first, long last) {
  long found = 0;
  for (long n = std::max(first, 2L); n < last; ++n) {
    bool prime = true;
    for (long d = 2; d * d <= n; ++d) {
      if (n % d == 0) {
        prime = false;
        break;
      }
    }
    found += prime ? 1 : 0;
  }
  return found;
}

/// A blocking call, as a driver or a legacy API would make: the thread waits.
int blocking_call(int milliseconds) {
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
  return 1;
}

constexpr int cpu_parts = 16;
constexpr long cpu_span = 60'000;
constexpr int io_calls = 48;
constexpr int io_ms = 20;
constexpr int waits = 2000;

template <class Work>
double seconds(Work&& work, long& answer) {
  const auto start = clock_type::now();
  answer = work();
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

template <simul::executor E>
long primes_on(E& ex) {
  std::vector<simul::future<long>> parts;
  for (int i = 0; i < cpu_parts; ++i) {
    parts.push_back(ex.submit(&count_primes, i * cpu_span, (i + 1) * cpu_span));
  }
  long total = 0;
  for (auto& part : parts) {
    total += part.get();
  }
  return total;
}

template <simul::executor E>
long calls_on(E& ex, int count) {
  std::vector<simul::future<int>> calls;
  for (int i = 0; i < count; ++i) {
    calls.push_back(ex.submit(&blocking_call, io_ms));
  }
  long total = 0;
  for (auto& call : calls) {
    total += call.get();
  }
  return total;
}

simul::task<int> one_wait() {
  co_await simul::sleep(std::chrono::milliseconds(io_ms));
  co_return 1;
}

simul::task<long> waits_on_loop() {
  std::vector<simul::task<int>> all;
  for (int i = 0; i < waits; ++i) {
    all.push_back(one_wait());
  }
  long total = 0;
  for (int w : co_await simul::gather(std::move(all))) {
    total += w;
  }
  co_return total;
}

void row(const char* what, double base, double t) { std::printf("  %-28s %8.3f s   %5.1fx\n", what, t, base / t); }

} // namespace

int main() {
  const auto cores = static_cast<std::size_t>(std::max(1U, std::thread::hardware_concurrency()));
  // The process pool first, so its zygote forks before any thread exists.
  simul::process_pool procs({.workers = cores});
  simul::thread_pool cpu_threads({.workers = cores, .name = "cpu"});
  simul::thread_pool io_threads({.workers = 16, .name = "io"});
  simul::inline_executor sequential;
  bool agree = true;

  std::printf("CPU-bound: count primes below %ld in %d parts (%zu cores)\n", cpu_parts * cpu_span, cpu_parts, cores);
  long a = 0, b = 0, c = 0;
  const double cpu_seq = seconds([&] { return primes_on(sequential); }, a);
  const double cpu_thr = seconds([&] { return primes_on(cpu_threads); }, b);
  const double cpu_proc = seconds([&] { return primes_on(procs); }, c);
  agree = agree && a == b && b == c;
  row("sequential", cpu_seq, cpu_seq);
  row("thread pool", cpu_seq, cpu_thr);
  row("process pool", cpu_seq, cpu_proc);

  std::printf("I/O-bound: %d blocking calls of %d ms\n", io_calls, io_ms);
  const double io_seq = seconds([&] { return calls_on(sequential, io_calls); }, a);
  const double io_thr = seconds([&] { return calls_on(io_threads, io_calls); }, b);
  agree = agree && a == io_calls && b == io_calls;
  row("sequential", io_seq, io_seq);
  row("thread pool (16 threads)", io_seq, io_thr);

  std::printf("Many waits: %d waits of %d ms\n", waits, io_ms);
  const double w_thr = seconds([&] { return calls_on(io_threads, waits); }, a);
  const double w_loop = seconds([&] { return simul::run(waits_on_loop()); }, b);
  agree = agree && a == waits && b == waits;
  row("thread pool (16 threads)", w_thr, w_thr);
  row("event loop (one thread)", w_thr, w_loop);

  if (!agree) {
    std::printf("the executors disagree on the answers\n");
    return 1;
  }
  std::printf("every executor gave the same answers\n");
  return 0;
}
