// M1-M4 of ../shared/BENCHMARKS.md: simul::mpi_pool against mpi4py.futures
// on the same work, and (M3) against a process_pool with as many workers, in
// one run. Runs under mpirun: ranks 1.. serve the pool, rank 0 runs the
// benchmarks. The mpi4py side runs peers.py as an MPI job of its own
// (launched by rank 0 with a fresh mpirun) and reports the workload's own
// time, fed to Google Benchmark as manual time. Never asserts on time.
//
//   bench/mpipool/run_bench.sh      (both transports; see docs/mpipool.md)
//
// SIMUL_BENCH_TRANSPORT names the transport in M2's name ("M2_round_trip_p50_tcp").

#include "../common/ratio_reporter.hpp"
#include "../common/wake_cpus.hpp"

#include <simul/mpipool.hpp>
#include <simul/procpool.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

simul::mpi_pool* g_ranks = nullptr;
int g_size = 0;
int g_argc = 0;
char** g_argv = nullptr;

std::optional<simul::mpi_pool>* g_pool = nullptr;

/// Rank 0: closes the pool and opens another with `options` in its place.
void reopen(const simul::mpi_pool_options& options) {
  g_pool->reset();
  g_ranks = &g_pool->emplace(g_argc, g_argv, options);
}

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

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// Runs peers.py for one workload as an MPI job of its own and returns its time.
double run_peer(const char* workload, benchmark::State& state) {
  std::string env = "env -i PATH=/usr/bin:/bin";
  for (const char* keep : {"HOME", "OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"}) {
    if (const char* value = std::getenv(keep)) {
      env += std::string(" ") + keep + "=" + value;
    }
  }
  const char* extra = std::getenv("SIMUL_BENCH_MPIRUN_ARGS"); // the transport of this run
  const std::string command = env + " " + SIMUL_MPIEXEC + " --oversubscribe -n " + std::to_string(g_size) + " " +
                              (extra != nullptr ? extra : "") + " /usr/bin/python3 -m mpi4py.futures " +
                              SIMUL_MPIPOOL_PEERS + " " + workload;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  char line[4096] = {};
  if (!pipe || std::fgets(line, sizeof(line), pipe.get()) == nullptr) {
    state.SkipWithError("mpirun python3 -m mpi4py.futures peers.py failed");
    return 0;
  }
  auto field = [&](const char* name) -> double {
    const auto key = std::string("\"") + name + "\": ";
    const char* at = std::strstr(line, key.c_str());
    return at != nullptr ? std::strtod(at + key.size(), nullptr) : -1;
  };
  for (const char* counter : {"p50_us", "p99_us"}) {
    if (const double v = field(counter); v >= 0) {
      state.counters[counter] = v;
    }
  }
  return field("seconds");
}

void peer(benchmark::State& state, const char* workload) {
  for (auto _ : state) {
    simul::bench::wake_all_cpus();
    state.SetIterationTime(run_peer(workload, state));
  }
}

void warm() {
  simul::bench::wake_all_cpus();
  for (int i = 0; i < 8; ++i) {
    (void)g_ranks->submit(tiny, i).get();
  }
}

// M1: 20,000 tiny tasks submitted, then all results got.
void m1_simul(benchmark::State& state) {
  warm();
  for (auto _ : state) {
    const auto start = clock_type::now();
    std::vector<simul::future<int>> futures;
    futures.reserve(20000);
    for (int i = 0; i < 20000; ++i) {
      futures.push_back(g_ranks->submit(tiny, i));
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

// M2: one task at a time; the time is the median round trip.
void m2_simul(benchmark::State& state) {
  warm();
  std::vector<double> latencies(5000);
  for (auto _ : state) {
    for (auto& l : latencies) {
      const auto start = clock_type::now();
      benchmark::DoNotOptimize(g_ranks->submit(tiny, 1).get());
      l = seconds_since(start);
    }
    std::sort(latencies.begin(), latencies.end());
    state.SetIterationTime(latencies[latencies.size() / 2]);
  }
  state.counters["p50_us"] = latencies[latencies.size() / 2] * 1e6;
  state.counters["p99_us"] = latencies[latencies.size() * 99 / 100] * 1e6;
}

// M3: 64 tasks of about 5 ms of CPU each (each side: the median of five runs).
std::uint64_t spin_for_5ms() {
  static const std::uint64_t n = [] {
    std::uint64_t count = 1000;
    for (;;) {
      const auto start = clock_type::now();
      benchmark::DoNotOptimize(spin(count));
      const double dt = seconds_since(start);
      if (dt > 0.02) {
        return static_cast<std::uint64_t>(static_cast<double>(count) * 0.005 / dt);
      }
      count *= 2;
    }
  }();
  return n;
}

/// The times of `runs` runs of `run`, in seconds, sorted.
template <class Run>
std::vector<double> sorted_times(int runs, Run run) {
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    const auto start = clock_type::now();
    run();
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  return times;
}

double median(const std::vector<double>& sorted) { return sorted[sorted.size() / 2]; }

// M3's time: the median of five runs of the 64 tasks. One run takes about
// 170 ms, and on this VM single runs of the same side differ by 10%.
template <class Run>
double m3_median(Run run) {
  return median(sorted_times(5, run));
}

template <class Executor>
void m3_on(benchmark::State& state, Executor& ex) {
  const auto n = spin_for_5ms();
  // Wake every worker first: bursts of two tasks per worker reach them all
  // (one task at a time would stay on one rank, and an idle rank looks for
  // work only every 10 ms).
  for (int round = 0; round < 4; ++round) {
    std::vector<simul::future<int>> burst;
    for (int i = 0; i < 2 * (g_size - 1); ++i) {
      burst.push_back(ex.submit(tiny, i));
    }
    for (auto& f : burst) {
      (void)f.get();
    }
  }
  for (auto _ : state) {
    state.SetIterationTime(m3_median([&] {
      std::vector<simul::future<std::uint32_t>> futures;
      for (int i = 0; i < 64; ++i) {
        futures.push_back(ex.submit(spin, n));
      }
      for (auto& f : futures) {
        benchmark::DoNotOptimize(f.get());
      }
    }));
  }
}

void m3_simul(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  m3_on(state, *g_ranks);
}

void m3_process_pool(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  simul::process_pool procs({.workers = static_cast<std::size_t>(g_size - 1)});
  m3_on(state, procs);
}

void m3_sequential(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  const auto n = spin_for_5ms();
  for (auto _ : state) {
    state.SetIterationTime(m3_median([&] {
      for (int i = 0; i < 64; ++i) {
        benchmark::DoNotOptimize(spin(n));
      }
    }));
  }
}

// M4: a 64 MiB buffer to a worker rank and back; the time is the median of
// seven round trips after two untimed, as peers.py times mpi4py's. The first
// round trips of a pool fault in the buffers both sides then reuse, and on
// a VM fresh memory can stay slow for more than one round trip.
double m4_median(benchmark::State& state, simul::mpi_pool& pool, const std::vector<std::uint8_t>& data) {
  for (int i = 0; i < 2; ++i) {
    benchmark::DoNotOptimize(pool.submit(echo, data).get().data());
  }
  const auto times = sorted_times(7, [&] { benchmark::DoNotOptimize(pool.submit(echo, data).get().data()); });
  state.counters["min_ms"] = times.front() * 1e3;
  state.counters["max_ms"] = times.back() * 1e3;
  return median(times);
}

void m4_simul(benchmark::State& state) {
  warm();
  std::vector<std::uint8_t> data(64 << 20);
  std::memset(data.data(), 7, data.size());
  for (auto _ : state) {
    state.SetIterationTime(m4_median(state, *g_ranks, data));
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}

// M4 again on a pool whose worker ranks keep their heap (keep_worker_heap):
// the pool is reopened with the option for this run, then as before.
void m4_simul_keep_heap(benchmark::State& state) {
  std::vector<std::uint8_t> data(64 << 20);
  std::memset(data.data(), 7, data.size());
  reopen({.keep_ranks = true, .keep_worker_heap = true});
  for (auto _ : state) {
    state.SetIterationTime(m4_median(state, *g_ranks, data));
  }
  reopen({.keep_ranks = true});
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}

// The floor: the same bytes copied there and back within this process.
void m4_memcpy(benchmark::State& state) {
  std::vector<std::uint8_t> data(64 << 20, 7);
  std::vector<std::uint8_t> there(data.size(), 0);
  std::vector<std::uint8_t> back(data.size(), 0);
  for (auto _ : state) {
    state.SetIterationTime(median(sorted_times(7, [&] {
      std::memcpy(there.data(), data.data(), data.size());
      std::memcpy(back.data(), there.data(), there.size());
      benchmark::DoNotOptimize(back.data());
    })));
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}

// The floor with fresh memory: the same two copies, each into a new vector
// reserved and advised for huge pages as the codec's decode does, which is
// what the default pool's two decodes pay (keep_worker_heap spares the
// worker rank's). The difference to `memcpy` is what fresh memory costs here.
void m4_memcpy_fresh(benchmark::State& state) {
  const std::vector<std::uint8_t> data(64 << 20, 7);
  auto fresh_copy = [](const std::vector<std::uint8_t>& from) {
    std::vector<std::uint8_t> to;
    to.reserve(from.size());
    simul::detail::advise_huge_pages(to.data(), to.capacity());
    to.insert(to.end(), from.begin(), from.end());
    return to;
  };
  for (auto _ : state) {
    state.SetIterationTime(median(sorted_times(7, [&] {
      const auto there = fresh_copy(data);
      const auto back = fresh_copy(there);
      benchmark::DoNotOptimize(back.data());
    })));
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}

void register_all() {
  const char* transport = std::getenv("SIMUL_BENCH_TRANSPORT");
  const std::string m2 = std::string("M2_round_trip_p50") + (transport != nullptr ? std::string("_") + transport : "");
  auto manual = [](benchmark::internal::Benchmark* b, benchmark::TimeUnit unit, int iterations) {
    b->UseManualTime()->Iterations(iterations)->Unit(unit);
  };
  using benchmark::kMicrosecond;
  using benchmark::kMillisecond;
  manual(benchmark::RegisterBenchmark("M1_tiny_tasks/simul", m1_simul), kMillisecond, 1);
  manual(benchmark::RegisterBenchmark("M1_tiny_tasks/mpi4py", peer, "M1"), kMillisecond, 1);
  manual(benchmark::RegisterBenchmark((m2 + "/simul").c_str(), m2_simul), kMicrosecond, 1);
  manual(benchmark::RegisterBenchmark((m2 + "/mpi4py").c_str(), peer, "M2"), kMicrosecond, 1);
  manual(benchmark::RegisterBenchmark("M3_cpu_64x5ms/simul", m3_simul), kMillisecond, 1);
  manual(benchmark::RegisterBenchmark("M3_cpu_64x5ms/process_pool", m3_process_pool), kMillisecond, 1);
  manual(benchmark::RegisterBenchmark("M3_cpu_64x5ms/sequential", m3_sequential), kMillisecond, 1);
  manual(benchmark::RegisterBenchmark("M3_cpu_64x5ms/mpi4py", peer, "M3"), kMillisecond, 1);
  manual(benchmark::RegisterBenchmark("M4_64MiB_round_trip/simul", m4_simul), kMillisecond, 1);
  manual(benchmark::RegisterBenchmark("M4_64MiB_round_trip/simul_keep_worker_heap", m4_simul_keep_heap), kMillisecond,
         1);
  manual(benchmark::RegisterBenchmark("M4_64MiB_round_trip/memcpy", m4_memcpy), kMillisecond, 1);
  manual(benchmark::RegisterBenchmark("M4_64MiB_round_trip/memcpy_fresh", m4_memcpy_fresh), kMillisecond, 1);
  manual(benchmark::RegisterBenchmark("M4_64MiB_round_trip/mpi4py", peer, "M4"), kMillisecond, 1);
}

} // namespace

int main(int argc, char** argv) {
  // Ranks 1.. serve in here until the end; keep_ranks lets rank 0 reopen
  // the pool with other options (M4's keep_worker_heap row).
  std::optional<simul::mpi_pool> ranks;
  ranks.emplace(argc, argv, simul::mpi_pool_options{.keep_ranks = true});
  g_pool = &ranks;
  g_ranks = &*ranks;
  g_size = ranks->size();
  g_argc = argc;
  g_argv = argv;
  benchmark::Initialize(&argc, argv);
  register_all();
  simul::bench::ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
