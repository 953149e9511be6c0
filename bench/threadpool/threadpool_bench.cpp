// simul::thread_pool against its peers, in one run (../shared/BENCHMARKS.md).
//
//   build/release/bench/threadpool/simul_bench_threadpool --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true   (one command line)
//   SIMUL_BENCH_PYTHON=1 ... adds T2's Python side (1,000,000 tasks through
//   ThreadPoolExecutor; about a minute per repetition).
//
// T1 t1_post_1M:        1,000,000 tiny tasks (an atomic increment) from one
//                       thread, then wait for all. simul post + wait_idle;
//                       Asio post + join; TBB task_group run + wait.
// T2 t2_submit_get_1M:  the same, each returning a value through a future.
//                       simul submit + get; Asio post(use_future) + get;
//                       Python ThreadPoolExecutor.submit + result.
// T3 t3_cpu_64x5ms:     64 CPU-bound tasks of about 5 ms; sequential is the
//                       baseline, so its ratio is simul's speedup. raw_threads
//                       (two threads and an atomic counter, no pool) is what
//                       the machine allows: its ratio is simul's share of it.
// scaling_post_400k:    400,000 posts split over 1-2 submitting threads, on
//                       pools of 1-4 workers; scaling_post_400k_asio is the
//                       same through Asio (times, no ratios).
//                       scaling_post_400k_same repeats the 1-worker rows: two
//                       names for one configuration, so that their gap is
//                       what noise alone does in the same run
//                       (bench/threadpool/scaling_check.py).
//
// Every side uses 2 workers (TBB: an arena of 2, the waiting thread joins in,
// as TBB is designed to). Pools are made inside the timed region for every
// side, since Asio's join ends its pool; making 2 threads costs microseconds.
// Freed memory stays in the process between repetitions (keep_heap.hpp), so
// that page faults do not decide T1 and T2; SIMUL_BENCH_DEFAULT_MALLOC=1 gives
// the cold-memory figures.

#include "../common/keep_heap.hpp"
#include "../common/ratio_reporter.hpp"
#include "../common/wake_cpus.hpp"

#include <simul/threadpool.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int k_workers = 2;
constexpr long k_tiny = 1'000'000;

// ---- T1 -------------------------------------------------------------------

void t1_simul(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  for (auto _ : state) {
    std::atomic<long> count{0};
    simul::thread_pool pool({.workers = k_workers});
    for (long i = 0; i < k_tiny; ++i) {
      pool.post([&count] { count.fetch_add(1, std::memory_order_relaxed); });
    }
    pool.wait_idle();
    if (count.load() != k_tiny) {
      state.SkipWithError("lost tasks");
    }
  }
  state.SetItemsProcessed(state.iterations() * k_tiny);
}

void t1_asio(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  for (auto _ : state) {
    std::atomic<long> count{0};
    boost::asio::thread_pool pool(k_workers);
    for (long i = 0; i < k_tiny; ++i) {
      boost::asio::post(pool, [&count] { count.fetch_add(1, std::memory_order_relaxed); });
    }
    pool.join();
    if (count.load() != k_tiny) {
      state.SkipWithError("lost tasks");
    }
  }
  state.SetItemsProcessed(state.iterations() * k_tiny);
}

void t1_tbb(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  for (auto _ : state) {
    std::atomic<long> count{0};
    tbb::task_arena arena(k_workers);
    arena.execute([&] {
      tbb::task_group group;
      for (long i = 0; i < k_tiny; ++i) {
        group.run([&count] { count.fetch_add(1, std::memory_order_relaxed); });
      }
      group.wait();
    });
    if (count.load() != k_tiny) {
      state.SkipWithError("lost tasks");
    }
  }
  state.SetItemsProcessed(state.iterations() * k_tiny);
}

// ---- T2 -------------------------------------------------------------------

void t2_simul(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  for (auto _ : state) {
    simul::thread_pool pool({.workers = k_workers});
    std::vector<simul::future<long>> futures;
    futures.reserve(k_tiny);
    for (long i = 0; i < k_tiny; ++i) {
      futures.push_back(pool.submit([i] { return i; }));
    }
    long sum = 0;
    for (auto& f : futures) {
      sum += f.get();
    }
    if (sum != k_tiny * (k_tiny - 1) / 2) {
      state.SkipWithError("wrong sum");
    }
  }
  state.SetItemsProcessed(state.iterations() * k_tiny);
}

void t2_asio(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  for (auto _ : state) {
    boost::asio::thread_pool pool(k_workers);
    std::vector<std::future<long>> futures;
    futures.reserve(k_tiny);
    for (long i = 0; i < k_tiny; ++i) {
      futures.push_back(boost::asio::post(pool, boost::asio::use_future([i] { return i; })));
    }
    long sum = 0;
    for (auto& f : futures) {
      sum += f.get();
    }
    pool.join();
    if (sum != k_tiny * (k_tiny - 1) / 2) {
      state.SkipWithError("wrong sum");
    }
  }
  state.SetItemsProcessed(state.iterations() * k_tiny);
}

void t2_python(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  for (auto _ : state) {
    const std::string command = std::string("python3 ") + SIMUL_T2_PYTHON_SCRIPT + " " + std::to_string(k_tiny) + " " +
                                std::to_string(k_workers);
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) {
      state.SkipWithError("cannot run python3");
      return;
    }
    double seconds = -1;
    char line[128];
    while (std::fgets(line, sizeof line, pipe) != nullptr) {
      seconds = std::atof(line);
    }
    if (::pclose(pipe) != 0 || seconds <= 0) {
      state.SkipWithError("the python side failed");
      return;
    }
    state.SetIterationTime(seconds);
  }
  state.SetItemsProcessed(state.iterations() * k_tiny);
}

// ---- T3 -------------------------------------------------------------------

constexpr int k_cpu_tasks = 64;

// A busy loop the compiler cannot remove; `iterations_for_5ms` is calibrated once.
std::uint64_t spin(std::uint64_t iterations, std::uint64_t seed) {
  std::uint64_t x = seed | 1;
  for (std::uint64_t i = 0; i < iterations; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}

std::uint64_t iterations_for_5ms() {
  static const std::uint64_t calibrated = [] {
    std::uint64_t n = 100'000;
    for (;;) {
      const auto start = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(spin(n, 42));
      const auto took = std::chrono::steady_clock::now() - start;
      if (took > std::chrono::milliseconds(20)) {
        return static_cast<std::uint64_t>(static_cast<double>(n) * 5e-3 / std::chrono::duration<double>(took).count());
      }
      n *= 2;
    }
  }();
  return calibrated;
}

void t3_sequential(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  const auto n = iterations_for_5ms();
  for (auto _ : state) {
    std::uint64_t acc = 0;
    for (int t = 0; t < k_cpu_tasks; ++t) {
      acc += spin(n, t);
    }
    benchmark::DoNotOptimize(acc);
  }
}

void t3_simul(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  const auto n = iterations_for_5ms();
  simul::thread_pool pool({.workers = k_workers});
  for (auto _ : state) {
    std::vector<simul::future<std::uint64_t>> futures;
    for (int t = 0; t < k_cpu_tasks; ++t) {
      futures.push_back(pool.submit(spin, n, static_cast<std::uint64_t>(t)));
    }
    std::uint64_t acc = 0;
    for (auto& f : futures) {
      acc += f.get();
    }
    benchmark::DoNotOptimize(acc);
  }
}

// The ceiling: two plain threads taking the next task from a shared counter,
// with no queue, no future and no pool around them.
void t3_raw_threads(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  const auto n = iterations_for_5ms();
  for (auto _ : state) {
    std::vector<std::uint64_t> out(k_cpu_tasks);
    std::atomic<int> next{0};
    auto work = [&] {
      for (int t = next.fetch_add(1); t < k_cpu_tasks; t = next.fetch_add(1)) {
        out[t] = spin(n, t);
      }
    };
    std::vector<std::thread> threads;
    for (int w = 0; w < k_workers; ++w) {
      threads.emplace_back(work);
    }
    for (auto& thread : threads) {
      thread.join();
    }
    benchmark::DoNotOptimize(out.data());
  }
}

void t3_asio(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  const auto n = iterations_for_5ms();
  boost::asio::thread_pool pool(k_workers);
  for (auto _ : state) {
    std::vector<std::future<std::uint64_t>> futures;
    for (int t = 0; t < k_cpu_tasks; ++t) {
      futures.push_back(boost::asio::post(pool, boost::asio::use_future([n, t] { return spin(n, t); })));
    }
    std::uint64_t acc = 0;
    for (auto& f : futures) {
      acc += f.get();
    }
    benchmark::DoNotOptimize(acc);
  }
  pool.join();
}

void t3_tbb(benchmark::State& state) {
  simul::bench::wake_all_cpus();
  const auto n = iterations_for_5ms();
  tbb::task_arena arena(k_workers);
  for (auto _ : state) {
    std::vector<std::uint64_t> out(k_cpu_tasks);
    arena.execute([&] {
      tbb::task_group group;
      for (int t = 0; t < k_cpu_tasks; ++t) {
        group.run([&out, n, t] { out[t] = spin(n, t); });
      }
      group.wait();
    });
    benchmark::DoNotOptimize(out.data());
  }
}

// ---- scaling ----------------------------------------------------------------

// `post(pool, task)` for one side of the scaling table.
template <class Pool, class Post, class Wait>
void scaling_run(benchmark::State& state, Post post, Wait wait_all) {
  simul::bench::wake_all_cpus();
  const auto workers = static_cast<std::size_t>(state.range(0));
  const auto submitters = static_cast<int>(state.range(1));
  constexpr long total = 400'000;
  for (auto _ : state) {
    std::atomic<long> count{0};
    Pool pool(workers);
    std::vector<std::thread> threads;
    for (int s = 0; s < submitters; ++s) {
      threads.emplace_back([&pool, &count, &post, submitters] {
        for (long i = 0; i < total / submitters; ++i) {
          post(pool, [&count] { count.fetch_add(1, std::memory_order_relaxed); });
        }
      });
    }
    for (auto& t : threads) {
      t.join();
    }
    wait_all(pool);
    if (count.load() != total) {
      state.SkipWithError("lost tasks");
    }
  }
  state.SetItemsProcessed(state.iterations() * total);
}

struct simul_pool : simul::thread_pool {
  explicit simul_pool(std::size_t workers) : simul::thread_pool({.workers = workers}) {}
};

void scaling(benchmark::State& state) {
  scaling_run<simul_pool>(
      state, [](simul_pool& pool, auto task) { pool.post(task); }, [](simul_pool& pool) { pool.wait_idle(); });
}

void scaling_asio(benchmark::State& state) {
  scaling_run<boost::asio::thread_pool>(
      state, [](boost::asio::thread_pool& pool, auto task) { boost::asio::post(pool, task); },
      [](boost::asio::thread_pool& pool) { pool.join(); });
}

} // namespace

int main(int argc, char** argv) {
  auto ms = [](benchmark::internal::Benchmark* b) { b->Unit(benchmark::kMillisecond)->UseRealTime(); };
  ms(benchmark::RegisterBenchmark("t1_post_1M/simul", t1_simul));
  ms(benchmark::RegisterBenchmark("t1_post_1M/asio", t1_asio));
  ms(benchmark::RegisterBenchmark("t1_post_1M/tbb", t1_tbb));
  ms(benchmark::RegisterBenchmark("t2_submit_get_1M/simul", t2_simul));
  ms(benchmark::RegisterBenchmark("t2_submit_get_1M/asio", t2_asio));
  if (const char* python = std::getenv("SIMUL_BENCH_PYTHON"); python != nullptr && std::string(python) == "1") {
    benchmark::RegisterBenchmark("t2_submit_get_1M/python", t2_python)
        ->Unit(benchmark::kMillisecond)
        ->UseManualTime()
        ->Iterations(1);
  }
  ms(benchmark::RegisterBenchmark("t3_cpu_64x5ms/simul", t3_simul));
  ms(benchmark::RegisterBenchmark("t3_cpu_64x5ms/sequential", t3_sequential));
  ms(benchmark::RegisterBenchmark("t3_cpu_64x5ms/asio", t3_asio));
  ms(benchmark::RegisterBenchmark("t3_cpu_64x5ms/tbb", t3_tbb));
  ms(benchmark::RegisterBenchmark("t3_cpu_64x5ms/raw_threads", t3_raw_threads));
  for (auto* scale : {benchmark::RegisterBenchmark("scaling_post_400k", scaling),
                      benchmark::RegisterBenchmark("scaling_post_400k_asio", scaling_asio)}) {
    ms(scale);
    scale->ArgNames({"workers", "submitters"});
    for (int w = 1; w <= 4; ++w) {
      for (int s = 1; s <= 2; ++s) {
        scale->Args({w, s});
      }
    }
  }
  auto* same = benchmark::RegisterBenchmark("scaling_post_400k_same", scaling);
  ms(same);
  same->ArgNames({"workers", "submitters"})->Args({1, 1})->Args({1, 2});
  benchmark::Initialize(&argc, argv);
  if (!simul::bench::keep_freed_memory()) {
    std::printf("glibc's default trim and mmap thresholds (cold memory on every repetition)\n");
  }
  simul::bench::ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
}
