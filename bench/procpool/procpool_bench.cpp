// P1-P6 of ../shared/BENCHMARKS.md: simul::process_pool against Python's
// ProcessPoolExecutor / multiprocessing.Pool (fork), sequential code and memcpy,
// all in one run; and what making a pool costs with each start method
// (pool_start/fork, pool_start/exec). The Python side runs peers.py once per repetition and reports
// the time of the workload alone (interpreter and pool start excluded), which
// is fed to Google Benchmark as manual time. Never asserts on time.
//
//   build/release/bench/procpool/simul_bench_procpool --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true   (one line)

#include "../common/ratio_reporter.hpp"
#include "../common/wake_cpus.hpp"

#include <simul/procpool.hpp>

#include <benchmark/benchmark.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::size_t k_workers = 2;

int tiny(int x) { return x + 1; }

std::uint32_t spin(std::uint64_t n) {
  std::uint32_t acc = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    acc = acc * 31U + static_cast<std::uint32_t>(i);
    benchmark::DoNotOptimize(acc);
  }
  return acc;
}

std::vector<std::uint8_t> echo(std::vector<std::uint8_t> data) { return data; }
simul::shared_buffer echo_shared(simul::shared_buffer data) { return data; }

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// Runs peers.py for one workload and returns its JSON line's fields.
double run_peer(const char* workload, benchmark::State& state) {
  const std::string command = std::string("python3 ") + SIMUL_PROCPOOL_PEERS + " " + workload;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  char line[4096] = {};
  if (!pipe || std::fgets(line, sizeof(line), pipe.get()) == nullptr) {
    state.SkipWithError("python3 peers.py failed");
    return 0;
  }
  auto field = [&](const char* name) -> double {
    const auto key = std::string("\"") + name + "\": ";
    const char* at = std::strstr(line, key.c_str());
    return at != nullptr ? std::strtod(at + key.size(), nullptr) : -1;
  };
  for (const char* counter : {"p50_us", "p99_us", "speedup", "completed", "lost", "still_serving"}) {
    if (const double v = field(counter); v >= 0) {
      state.counters[counter] = v;
    }
  }
  return field("seconds");
}

void peer(benchmark::State& state, const char* workload) {
  for (auto _ : state) {
    simul::bench::wake_all_cpus(); // manual time: the peer reports its workload's own time
    state.SetIterationTime(run_peer(workload, state));
  }
}

simul::process_pool& pool() {
  static simul::process_pool procs({.workers = k_workers});
  return procs;
}

void warm(simul::process_pool& procs) {
  simul::bench::wake_all_cpus();
  for (int i = 0; i < 8; ++i) {
    (void)procs.submit(tiny, i).get();
  }
}

// P1: 20,000 tiny tasks submitted, then all results got.
void p1_simul(benchmark::State& state) {
  auto& procs = pool();
  warm(procs);
  for (auto _ : state) {
    const auto start = clock_type::now();
    std::vector<simul::future<int>> futures;
    futures.reserve(20000);
    for (int i = 0; i < 20000; ++i) {
      futures.push_back(procs.submit(tiny, i));
    }
    long long total = 0;
    for (auto& f : futures) {
      total += f.get();
    }
    benchmark::DoNotOptimize(total);
    state.SetIterationTime(seconds_since(start));
  }
  state.SetItemsProcessed(state.iterations() * 20000);
}

// P2: one task at a time; the time is the median round trip.
void p2_simul(benchmark::State& state) {
  auto& procs = pool();
  warm(procs);
  std::vector<double> latencies(5000);
  for (auto _ : state) {
    for (auto& l : latencies) {
      const auto start = clock_type::now();
      benchmark::DoNotOptimize(procs.submit(tiny, 1).get());
      l = seconds_since(start);
    }
    std::sort(latencies.begin(), latencies.end());
    state.SetIterationTime(latencies[latencies.size() / 2]);
  }
  state.counters["p50_us"] = latencies[latencies.size() / 2] * 1e6;
  state.counters["p99_us"] = latencies[latencies.size() * 99 / 100] * 1e6;
}

// P3: map over 1,000,000 tiny items, 1000 per chunk.
void p3_simul(benchmark::State& state) {
  auto& procs = pool();
  warm(procs);
  std::vector<int> items(1000000);
  for (int i = 0; i < 1000000; ++i) {
    items[i] = i;
  }
  for (auto _ : state) {
    const auto start = clock_type::now();
    auto out = procs.map(tiny, items, {.chunksize = 1000});
    benchmark::DoNotOptimize(out.back());
    state.SetIterationTime(seconds_since(start));
  }
}

// P4: 64 CPU tasks of about 5 ms each, against the same work done sequentially.
std::uint64_t spin_for_5ms() {
  static const std::uint64_t n = [] {
    std::uint64_t count = 1 << 16;
    for (;;) {
      const auto start = clock_type::now();
      spin(count);
      const double dt = seconds_since(start);
      if (dt > 0.002) {
        return static_cast<std::uint64_t>(static_cast<double>(count) * 0.005 / dt);
      }
      count *= 2;
    }
  }();
  return n;
}

void p4_simul(benchmark::State& state) {
  auto& procs = pool();
  warm(procs);
  const auto n = spin_for_5ms();
  for (auto _ : state) {
    const auto start = clock_type::now();
    std::vector<simul::future<std::uint32_t>> futures;
    for (int i = 0; i < 64; ++i) {
      futures.push_back(procs.submit(spin, n));
    }
    for (auto& f : futures) {
      benchmark::DoNotOptimize(f.get());
    }
    state.SetIterationTime(seconds_since(start));
  }
}

void p4_sequential(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  const auto n = spin_for_5ms();
  for (auto _ : state) {
    const auto start = clock_type::now();
    for (int i = 0; i < 64; ++i) {
      benchmark::DoNotOptimize(spin(n));
    }
    state.SetIterationTime(seconds_since(start));
  }
}

// P5: a 64 MiB buffer to a worker and back, `data` sent to `echo_fn`.
template <class Buffer>
void p5_round_trips(benchmark::State& state, simul::process_pool& procs, Buffer (*echo_fn)(Buffer), Buffer data) {
  warm(procs);
  std::memset(data.data(), 7, data.size());
  for (auto _ : state) {
    const auto start = clock_type::now();
    auto back = procs.submit(echo_fn, data).get();
    benchmark::DoNotOptimize(back.data());
    state.SetIterationTime(seconds_since(start));
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}

// A std::vector: copied into a memfd and out of it on each side.
void p5_simul(benchmark::State& state) { p5_round_trips(state, pool(), echo, std::vector<std::uint8_t>(64 << 20)); }

// The same with workers that keep their heap (process_pool_options::keep_worker_heap).
void p5_simul_keep_heap(benchmark::State& state) {
  static simul::process_pool procs({.workers = k_workers, .keep_worker_heap = true});
  p5_round_trips(state, procs, echo, std::vector<std::uint8_t>(64 << 20));
}

// A shared_buffer: the worker maps the caller's pages (every page table entry
// made at once, MAP_POPULATE) and sends the same memory back.
void p5_simul_shared_buffer(benchmark::State& state) {
  p5_round_trips(state, pool(), echo_shared, simul::shared_buffer(64 << 20));
}

void p5_memcpy(benchmark::State& state) {
  std::vector<std::uint8_t> data(64 << 20, 7);
  std::vector<std::uint8_t> copy(data.size());
  for (auto _ : state) {
    const auto start = clock_type::now();
    std::memcpy(copy.data(), data.data(), data.size());
    benchmark::DoNotOptimize(copy.data());
    state.SetIterationTime(seconds_since(start));
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}

// P6: 10,000 small tasks while a thread SIGKILLs a random worker every 20 ms.
void p6_simul(benchmark::State& state) {
  std::uint64_t completed = 0;
  std::uint64_t crashed = 0;
  bool serving = true;
  for (auto _ : state) {
    simul::process_pool procs({.workers = k_workers, .restart_limit = 1000});
    warm(procs);
    std::atomic<bool> stop{false};
    std::thread killer([&] {
      std::mt19937 rng(7);
      while (!stop.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const auto pids = procs.worker_pids();
        if (!pids.empty()) {
          ::kill(pids[rng() % pids.size()], SIGKILL);
        }
      }
    });
    const auto start = clock_type::now();
    std::vector<simul::future<std::uint32_t>> futures;
    for (int i = 0; i < 10000; ++i) {
      futures.push_back(procs.submit(spin, std::uint64_t{20000}));
    }
    completed = 0;
    crashed = 0;
    for (auto& f : futures) {
      try {
        benchmark::DoNotOptimize(f.get());
        ++completed;
      } catch (const simul::worker_crashed&) {
        ++crashed;
      }
    }
    state.SetIterationTime(seconds_since(start));
    stop = true;
    killer.join();
    // The killer's last victim may not be known dead yet: one retry.
    try {
      serving = procs.submit(tiny, 1).get() == 2;
    } catch (const simul::worker_crashed&) {
      serving = procs.submit(tiny, 1).get() == 2;
    }
  }
  state.counters["completed"] = static_cast<double>(completed);
  state.counters["lost"] = static_cast<double>(crashed);
  state.counters["still_serving"] = serving ? 1 : 0;
}

/// The cost of making a pool with each start method: the constructor alone
/// (manual time; for exec, the spawn of /proc/self/exe, its static
/// initializers and the handshake) and, as a counter, until the first task's
/// result is back (the workers forked too). The destructor is not timed.
void pool_start(benchmark::State& state, simul::start_method start) {
  double first_result = 0;
  for (auto _ : state) {
    const auto begin = clock_type::now();
    auto procs =
        std::make_unique<simul::process_pool>(simul::process_pool_options{.workers = k_workers, .start = start});
    state.SetIterationTime(seconds_since(begin));
    benchmark::DoNotOptimize(procs->submit(tiny, 1).get());
    first_result += seconds_since(begin);
    procs.reset();
  }
  state.counters["first_result_ms"] = 1e3 * first_result / static_cast<double>(state.iterations());
}

} // namespace

BENCHMARK_CAPTURE(pool_start, fork, simul::start_method::fork)
    ->Name("pool_start/fork")
    ->UseManualTime()
    ->Iterations(20)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(pool_start, exec, simul::start_method::exec)
    ->Name("pool_start/exec")
    ->UseManualTime()
    ->Iterations(20)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(p1_simul)->Name("P1_tiny_tasks/simul")->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(peer, p1, "P1")
    ->Name("P1_tiny_tasks/python_ppe")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(p2_simul)->Name("P2_round_trip_p50/simul")->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(peer, p2, "P2")
    ->Name("P2_round_trip_p50/python_ppe")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(p3_simul)->Name("P3_map_1M/simul")->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(peer, p3, "P3")
    ->Name("P3_map_1M/python_pool")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(p4_simul)->Name("P4_cpu_64x5ms/simul")->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(p4_sequential)
    ->Name("P4_cpu_64x5ms/sequential")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(peer, p4, "P4")
    ->Name("P4_cpu_64x5ms/python_ppe")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(p5_simul)->Name("P5_64MiB_round_trip/simul")->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(p5_memcpy)->Name("P5_64MiB_round_trip/memcpy")->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(p5_simul_keep_heap)
    ->Name("P5_64MiB_keep_worker_heap/simul")
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(p5_memcpy)
    ->Name("P5_64MiB_keep_worker_heap/memcpy")
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(p5_simul_shared_buffer)
    ->Name("P5_64MiB_shared_buffer/simul")
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(p5_memcpy)
    ->Name("P5_64MiB_shared_buffer/memcpy")
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(p6_simul)->Name("P6_random_kills/simul")->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(peer, p6, "P6")
    ->Name("P6_random_kills/python_ppe")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  simul::bench::ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
