// simul::to_thread: blocking calls on the default thread pool, awaited.

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST(ToThread, RunsOffTheLoopThreadAndResumesOnIt) {
  auto main = []() -> simul::task<void> {
    const auto loop_thread = std::this_thread::get_id();
    const auto worker = co_await simul::to_thread([] { return std::this_thread::get_id(); });
    EXPECT_NE(worker, loop_thread);
    EXPECT_EQ(std::this_thread::get_id(), loop_thread);
    EXPECT_EQ(co_await simul::to_thread([](int a, std::string b) { return b + std::to_string(a); }, 7, "x"), "x7");
  };
  simul::run(main());
}

// The loop keeps running while the calls block: a ticker on the loop makes
// progress during a blocking call, and blocking calls overlap each other.
TEST(ToThread, BlockingCallsDoNotStallTheLoop) {
  auto main = []() -> simul::task<int> {
    std::atomic<bool> release{false};
    int ticks = 0;
    auto blocked = simul::create_task([](std::atomic<bool>* flag) -> simul::task<int> {
      co_return co_await simul::to_thread([flag] {
        while (!flag->load()) {
          std::this_thread::sleep_for(1ms);
        }
        return 1;
      });
    }(&release));
    while (ticks < 5) {
      co_await simul::sleep(1ms);
      ++ticks;
    }
    release = true;
    co_return co_await blocked + ticks;
  };
  EXPECT_EQ(simul::run(main()), 6);
}

TEST(ToThread, ExceptionsArriveAtTheAwait) {
  auto main = []() -> simul::task<void> {
    EXPECT_THROW(co_await simul::to_thread([]() -> int { throw std::invalid_argument("bad input"); }),
                 std::invalid_argument);
  };
  simul::run(main());
}

// Cancelling the awaiting task cancels the call: one still queued behind
// busy threads never runs.
TEST(ToThread, CancellingTheTaskCancelsAQueuedCall) {
  auto& pool = simul::default_thread_pool();
  std::atomic<bool> release{false};
  std::atomic<int> ran{0};
  std::atomic<std::size_t> busy{0};
  std::vector<simul::future<void>> blockers;
  for (std::size_t i = 0; i < pool.workers(); ++i) {
    blockers.push_back(pool.submit([&release, &busy] {
      ++busy;
      while (!release.load()) {
        std::this_thread::sleep_for(1ms);
      }
    }));
  }
  while (busy.load() < pool.workers()) { // every thread is taken
    std::this_thread::sleep_for(1ms);
  }
  auto main = [&]() -> simul::task<void> {
    // A coroutine lambda's captures die with the lambda: pass by parameter.
    auto waiting = simul::create_task([](std::atomic<int>* counter) -> simul::task<void> {
      co_await simul::to_thread([counter] { ++*counter; });
    }(&ran));
    co_await simul::sleep(2ms);
    waiting.cancel();
    EXPECT_THROW(co_await waiting, simul::cancelled_error);
  };
  simul::run(main());
  release = true;
  for (auto& b : blockers) {
    b.get();
  }
  pool.wait_idle();
  EXPECT_EQ(ran.load(), 0);
}
