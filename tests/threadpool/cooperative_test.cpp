#include <simul/threadpool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

long fib(simul::thread_pool& pool, int n) {
  if (n < 2) {
    return n;
  }
  auto a = pool.submit([&pool, n] { return fib(pool, n - 1); });
  auto b = pool.submit([&pool, n] { return fib(pool, n - 2); });
  return a.get() + b.get();
}

} // namespace

TEST(ThreadPoolCooperative, RecursiveFibOnAOneThreadPoolCompletes) {
  simul::thread_pool pool({.workers = 1});
  auto f = pool.submit([&pool] { return fib(pool, 25); });
  EXPECT_EQ(f.get(), 75025);
  pool.wait_idle();
  auto s = pool.stats();
  // fib(25) makes 2 * fib(26) - 2 = 242784 subtasks, plus the outer one.
  EXPECT_EQ(s.completed, 242785U);
  EXPECT_EQ(s.failed, 0U);
}

TEST(ThreadPoolCooperative, RecursiveFibOnTwoThreadsSteals) {
  simul::thread_pool pool({.workers = 2});
  auto f = pool.submit([&pool] { return fib(pool, 20); });
  EXPECT_EQ(f.get(), 6765);
  pool.wait_idle();
  EXPECT_EQ(pool.stats().completed, 2U * 10946U - 2U + 1U);
}

TEST(ThreadPoolCooperative, WaitForInsideATaskRunsOtherWork) {
  simul::thread_pool pool({.workers = 1});
  auto outer = pool.submit([&pool] {
    auto inner = pool.submit([] { return 9; });
    // On the only worker, the inner task can run only while we wait.
    const bool ready = inner.wait_for(10s);
    return ready ? inner.get() : -1;
  });
  EXPECT_EQ(outer.get(), 9);
}

TEST(ThreadPoolCooperative, WaitingOnAnotherThreadsFutureTimesOut) {
  simul::thread_pool pool({.workers = 1});
  simul::promise<int> never;
  auto f = never.get_future();
  auto outer = pool.submit([&f] { return f.wait_for(20ms); });
  EXPECT_FALSE(outer.get());
  never.set_value(1);
  EXPECT_EQ(f.get(), 1);
}

TEST(ThreadPoolCooperative, NestedSubmitsSeveralLevelsDeep) {
  simul::thread_pool pool({.workers = 2});
  std::function<int(int)> depth = [&](int level) -> int {
    if (level == 0) {
      return 1;
    }
    std::vector<simul::future<int>> children;
    for (int i = 0; i < 3; ++i) {
      children.push_back(pool.submit(depth, level - 1));
    }
    int sum = 0;
    for (auto& c : children) {
      sum += c.get();
    }
    return sum;
  };
  EXPECT_EQ(pool.submit(depth, 7).get(), 2187);
}

TEST(ThreadPoolStealing, AnIdleWorkerStealsFromABusyOnesDeque) {
  simul::thread_pool pool({.workers = 2});
  std::atomic<int> done{0};
  // The outer task pushes its children to its own deque and then blocks
  // without waiting cooperatively: only the other worker can run them, by
  // stealing.
  auto outer = pool.submit([&pool, &done] {
    for (int i = 0; i < 20; ++i) {
      pool.post([&done] { done.fetch_add(1); });
    }
    while (done.load() < 20) {
      std::this_thread::sleep_for(100us);
    }
  });
  outer.get();
  pool.wait_idle();
  EXPECT_EQ(done.load(), 20);
  EXPECT_GE(pool.stats().stolen, 20U);
}
