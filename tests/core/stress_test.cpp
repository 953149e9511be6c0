// Races between producers, waiters, cancellers and continuations, repeated
// many times so ThreadSanitizer sees every interleaving it can.

#include <simul/core.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST(CoreStress, CompleteWaitCancelAndThenRaceWithoutLossOrDoubling) {
  constexpr int rounds = 2000;
  for (int round = 0; round < rounds; ++round) {
    simul::promise<int> p;
    auto f = p.get_future();
    std::atomic<int> continuation_runs{0};
    auto chained = f.then([&continuation_runs](simul::future<int> ready) {
      ++continuation_runs;
      return ready.cancelled() ? -1 : ready.get();
    });
    std::atomic<int> cancel_wins{0};
    std::barrier start(3);
    std::thread producer([&] {
      start.arrive_and_wait();
      if (p.set_running_or_notify_cancel()) {
        p.set_value(round);
      }
    });
    std::thread canceller([&] {
      start.arrive_and_wait();
      if (chained.cancel()) {
        ++cancel_wins;
      }
    });
    start.arrive_and_wait();
    const bool finished = chained.wait_for(10s);
    producer.join();
    canceller.join();
    ASSERT_TRUE(finished);
    if (cancel_wins == 1) {
      EXPECT_TRUE(chained.cancelled());
      EXPECT_THROW(chained.get(), simul::cancelled_error);
    } else {
      EXPECT_EQ(chained.get(), round);
    }
    EXPECT_LE(continuation_runs.load(), 1);
  }
}

TEST(CoreStress, ManyWaitersOneProducer) {
  for (int round = 0; round < 300; ++round) {
    std::vector<simul::promise<int>> promises(8);
    std::vector<simul::future<int>> futures;
    for (auto& p : promises) {
      futures.push_back(p.get_future());
    }
    std::atomic<int> woken{0};
    std::vector<std::thread> waiters;
    for (int i = 0; i < 4; ++i) {
      waiters.emplace_back([&, i] {
        if (i % 2 == 0) {
          futures[i].wait();
        } else {
          while (!futures[i].wait_for(1ms)) {
          }
        }
        ++woken;
      });
    }
    std::thread producer([&] {
      for (int i = 0; i < 8; ++i) {
        promises[i].set_value(i);
      }
    });
    auto result = simul::wait(futures, simul::return_when::first_exception);
    producer.join();
    for (auto& w : waiters) {
      w.join();
    }
    EXPECT_EQ(woken, 4);
    EXPECT_EQ(result.done.size(), 8U);
  }
}

TEST(CoreStress, CancelVersusStartHasExactlyOneWinner) {
  std::atomic<int> ran{0};
  std::atomic<int> cancelled{0};
  constexpr int rounds = 5000;
  for (int round = 0; round < rounds; ++round) {
    simul::promise<void> p;
    auto f = p.get_future();
    std::thread producer([&] {
      if (p.set_running_or_notify_cancel()) {
        ++ran;
        p.set_value();
      }
    });
    if (f.cancel()) {
      ++cancelled;
    }
    producer.join();
    EXPECT_TRUE(f.ready());
  }
  EXPECT_EQ(ran + cancelled, rounds);
}

TEST(CoreStress, AsCompletedWithManyProducers) {
  constexpr int count = 400;
  std::vector<simul::promise<int>> promises(count);
  std::vector<simul::future<int>> futures;
  for (auto& p : promises) {
    futures.push_back(p.get_future());
  }
  std::vector<std::thread> producers;
  for (int t = 0; t < 4; ++t) {
    producers.emplace_back([&, t] {
      for (int i = t; i < count; i += 4) {
        promises[i].set_value(i);
      }
    });
  }
  long sum = 0;
  int seen = 0;
  for (auto& f : simul::as_completed(futures, 30s)) {
    sum += f.get();
    ++seen;
  }
  for (auto& t : producers) {
    t.join();
  }
  EXPECT_EQ(seen, count);
  EXPECT_EQ(sum, static_cast<long>(count) * (count - 1) / 2);
}

TEST(CoreStress, OnReadyRegisteredWhileCompletingRunsExactlyOnce) {
  for (int round = 0; round < 3000; ++round) {
    simul::promise<int> p;
    auto f = p.get_future();
    std::atomic<int> runs{0};
    std::thread producer([&] { p.set_value(1); });
    for (int i = 0; i < 4; ++i) {
      f.on_ready([&runs] { ++runs; });
    }
    producer.join();
    EXPECT_EQ(runs, 4);
  }
}
