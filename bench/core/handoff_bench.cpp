// promise -> future hand-off: simul::promise/future against std::promise/future.
//
//   build/release/bench/core/simul_bench_core --benchmark_repetitions=5
//
// handoff_same_thread:  make a pair, set, get, on one thread (allocation + bookkeeping)
// handoff_cross_thread: a producer thread completes promises that the main
//                       thread is already waiting on, one at a time (wake-up cost)
// handoff_ready_batch:  1000 pairs completed by another thread, then collected
//                       (the thread-pool pattern: most results are ready when asked)

#include "../common/ratio_reporter.hpp"

#include <simul/core/future.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

namespace {

template <template <class> class Promise>
void handoff_same_thread(benchmark::State& state) {
  for (auto _ : state) {
    Promise<int> p;
    auto f = p.get_future();
    p.set_value(1);
    benchmark::DoNotOptimize(f.get());
  }
}

// The producer takes each promise from a slot, completes it and destroys it
// (a promise belongs to its producer); the main thread blocks in get() each
// time, so every hand-off crosses threads.
template <template <class> class Promise>
void handoff_cross_thread(benchmark::State& state) {
  std::atomic<Promise<int>*> slot{nullptr};
  std::atomic<bool> done{false};
  std::thread producer([&] {
    while (!done.load(std::memory_order_acquire)) {
      if (auto* p = slot.exchange(nullptr, std::memory_order_acq_rel)) {
        p->set_value(7);
        delete p;
      }
    }
  });
  for (auto _ : state) {
    auto* p = new Promise<int>();
    auto f = p->get_future();
    slot.store(p, std::memory_order_release);
    benchmark::DoNotOptimize(f.get());
  }
  done.store(true, std::memory_order_release);
  producer.join();
}

template <template <class> class Promise>
void handoff_ready_batch(benchmark::State& state) {
  constexpr int batch = 1000;
  for (auto _ : state) {
    std::vector<Promise<int>> promises(batch);
    std::vector<decltype(promises[0].get_future())> futures;
    futures.reserve(batch);
    for (auto& p : promises) {
      futures.push_back(p.get_future());
    }
    std::thread producer([&] {
      for (int i = 0; i < batch; ++i) {
        promises[i].set_value(i);
      }
    });
    long sum = 0;
    for (auto& f : futures) {
      sum += f.get();
    }
    producer.join();
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

BENCHMARK(handoff_same_thread<simul::promise>)->Name("handoff_same_thread/simul");
BENCHMARK(handoff_same_thread<std::promise>)->Name("handoff_same_thread/std");
BENCHMARK(handoff_cross_thread<simul::promise>)->Name("handoff_cross_thread/simul")->UseRealTime();
BENCHMARK(handoff_cross_thread<std::promise>)->Name("handoff_cross_thread/std")->UseRealTime();
BENCHMARK(handoff_ready_batch<simul::promise>)->Name("handoff_ready_batch/simul")->UseRealTime();
BENCHMARK(handoff_ready_batch<std::promise>)->Name("handoff_ready_batch/std")->UseRealTime();

} // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  simul::bench::ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
}
