// The loop against its peers, in one run (../shared/BENCHMARKS.md L1-L3).
//
//   build/release/bench/loop/simul_bench_loop --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
//   /usr/bin/python3 bench/loop/asyncio_bench.py        # the Python peers, same machine, same session
//
// L1 create_gather: create 1,000,000 trivial coroutine tasks and wait for all
//    (simul: create_task + gather; Asio: co_spawn with a completion handler).
// L2 yield:         100 coroutines x 10,000 yields to the loop
//    (simul: yield_now; Asio: co_await post(executor, use_awaitable)).
// L3 sleeps:        100,000 concurrent 1 ms sleeps, time until all completed
//    (simul: sleep + gather; raw libuv: one uv_timer_t each; Asio: steady_timer::async_wait).
//
// Freed memory stays in the process between repetitions (keep_heap.hpp):
// simul's frame pool keeps its blocks anyway, while what Asio and libuv free
// goes back to glibc, which would hand it to the kernel and fault it in again
// on the next repetition. SIMUL_BENCH_DEFAULT_MALLOC=1 gives the cold figures.

#include "../common/keep_heap.hpp"
#include "../common/ratio_reporter.hpp"

#include <simul/loop.hpp>

#include <benchmark/benchmark.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <uv.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

namespace asio = boost::asio;

namespace {

constexpr int k_l1_tasks = 1'000'000;
constexpr int k_l2_coroutines = 100;
constexpr int k_l2_yields = 10'000;
constexpr int k_l3_sleeps = 100'000;

// ---- L1 ----

simul::task<int> trivial(int i) { co_return i & 1; }

void create_gather_simul(benchmark::State& state) {
  for (auto _ : state) {
    auto main = []() -> simul::task<long> {
      std::vector<simul::task_handle<int>> hs;
      hs.reserve(k_l1_tasks);
      for (int i = 0; i < k_l1_tasks; ++i) {
        hs.push_back(simul::create_task(trivial(i)));
      }
      auto results = co_await simul::gather(std::move(hs));
      long sum = 0;
      for (int v : results) {
        sum += v;
      }
      co_return sum;
    };
    benchmark::DoNotOptimize(simul::run(main()));
  }
  state.SetItemsProcessed(state.iterations() * k_l1_tasks);
}

asio::awaitable<int> asio_trivial(int i) { co_return i & 1; }

void create_gather_asio(benchmark::State& state) {
  for (auto _ : state) {
    asio::io_context ctx(1);
    std::vector<int> results(k_l1_tasks);
    long done = 0;
    for (int i = 0; i < k_l1_tasks; ++i) {
      asio::co_spawn(ctx, asio_trivial(i), [&results, &done, i](std::exception_ptr, int v) {
        results[static_cast<std::size_t>(i)] = v;
        ++done;
      });
    }
    ctx.run();
    benchmark::DoNotOptimize(done);
  }
  state.SetItemsProcessed(state.iterations() * k_l1_tasks);
}

// ---- L2 ----

void yield_simul(benchmark::State& state) {
  for (auto _ : state) {
    auto main = []() -> simul::task<void> {
      auto yielder = []() -> simul::task<void> {
        for (int i = 0; i < k_l2_yields; ++i) {
          co_await simul::yield_now();
        }
      };
      std::vector<simul::task<void>> ts;
      for (int i = 0; i < k_l2_coroutines; ++i) {
        ts.push_back(yielder());
      }
      co_await simul::gather(std::move(ts));
    };
    simul::run(main());
  }
  state.SetItemsProcessed(state.iterations() * k_l2_coroutines * k_l2_yields);
}

asio::awaitable<void> asio_yielder() {
  auto ex = co_await asio::this_coro::executor;
  for (int i = 0; i < k_l2_yields; ++i) {
    co_await asio::post(ex, asio::use_awaitable);
  }
}

void yield_asio(benchmark::State& state) {
  for (auto _ : state) {
    asio::io_context ctx(1);
    for (int i = 0; i < k_l2_coroutines; ++i) {
      asio::co_spawn(ctx, asio_yielder(), asio::detached);
    }
    ctx.run();
  }
  state.SetItemsProcessed(state.iterations() * k_l2_coroutines * k_l2_yields);
}

// ---- L3 ----

void sleeps_simul(benchmark::State& state) {
  for (auto _ : state) {
    auto main = []() -> simul::task<void> {
      auto sleeper = []() -> simul::task<void> { co_await simul::sleep(std::chrono::milliseconds(1)); };
      std::vector<simul::task<void>> ts;
      ts.reserve(k_l3_sleeps);
      for (int i = 0; i < k_l3_sleeps; ++i) {
        ts.push_back(sleeper());
      }
      co_await simul::gather(std::move(ts));
    };
    simul::run(main());
  }
  state.SetItemsProcessed(state.iterations() * k_l3_sleeps);
}

void sleeps_libuv(benchmark::State& state) {
  for (auto _ : state) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    auto timers = std::make_unique<uv_timer_t[]>(k_l3_sleeps);
    int fired = 0;
    for (int i = 0; i < k_l3_sleeps; ++i) {
      uv_timer_init(&loop, &timers[i]);
      timers[i].data = &fired;
      uv_timer_start(
          &timers[i], [](uv_timer_t* t) { ++*static_cast<int*>(t->data); }, 1, 0);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < k_l3_sleeps; ++i) {
      uv_close(reinterpret_cast<uv_handle_t*>(&timers[i]), nullptr);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    benchmark::DoNotOptimize(fired);
  }
  state.SetItemsProcessed(state.iterations() * k_l3_sleeps);
}

void sleeps_asio(benchmark::State& state) {
  for (auto _ : state) {
    asio::io_context ctx(1);
    std::vector<std::unique_ptr<asio::steady_timer>> timers;
    timers.reserve(k_l3_sleeps);
    int fired = 0;
    for (int i = 0; i < k_l3_sleeps; ++i) {
      timers.push_back(std::make_unique<asio::steady_timer>(ctx, std::chrono::milliseconds(1)));
      timers.back()->async_wait([&fired](const boost::system::error_code&) { ++fired; });
    }
    ctx.run();
    benchmark::DoNotOptimize(fired);
  }
  state.SetItemsProcessed(state.iterations() * k_l3_sleeps);
}

} // namespace

BENCHMARK(create_gather_simul)->Name("L1_create_gather/simul")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(create_gather_asio)->Name("L1_create_gather/asio")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(yield_simul)->Name("L2_yield/simul")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(yield_asio)->Name("L2_yield/asio")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(sleeps_simul)->Name("L3_sleeps/simul")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(sleeps_libuv)->Name("L3_sleeps/libuv")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(sleeps_asio)->Name("L3_sleeps/asio")->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (!simul::bench::keep_freed_memory()) {
    std::printf("glibc's default trim and mmap thresholds (cold memory on every repetition)\n");
  }
  simul::bench::ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
}
