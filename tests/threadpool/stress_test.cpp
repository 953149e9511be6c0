// Stress: the racy paths of the pool repeated many times. Sized to stay within
// a few seconds in the dev preset and well within budget under TSan.

#include <simul/threadpool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST(ThreadPoolStress, AMillionPostedTasks) {
  simul::thread_pool pool({.workers = 2});
  std::atomic<long> count{0};
  constexpr long n = 1'000'000;
  for (long i = 0; i < n; ++i) {
    pool.post([&count] { count.fetch_add(1, std::memory_order_relaxed); });
  }
  pool.wait_idle();
  EXPECT_EQ(count.load(), n);
  auto s = pool.stats();
  EXPECT_EQ(s.completed, static_cast<std::uint64_t>(n));
  EXPECT_EQ(s.queued, 0U);
}

TEST(ThreadPoolStress, ManySubmittedFuturesAllArrive) {
  simul::thread_pool pool({.workers = 3});
  std::vector<simul::future<int>> futures;
  constexpr int n = 100'000;
  futures.reserve(n);
  for (int i = 0; i < n; ++i) {
    futures.push_back(pool.submit([i] { return i; }));
  }
  long sum = 0;
  for (auto& f : futures) {
    sum += f.get();
  }
  EXPECT_EQ(sum, static_cast<long>(n) * (n - 1) / 2);
}

TEST(ThreadPoolStress, FourThreadsSubmittingAtOnce) {
  simul::thread_pool pool({.workers = 2});
  std::atomic<long> count{0};
  constexpr int per_thread = 50'000;
  std::vector<std::thread> submitters;
  for (int t = 0; t < 4; ++t) {
    submitters.emplace_back([&] {
      std::vector<simul::future<int>> mine;
      for (int i = 0; i < per_thread; ++i) {
        if (i % 2 == 0) {
          pool.post([&count] { count.fetch_add(1, std::memory_order_relaxed); });
        } else {
          mine.push_back(pool.submit([&count] { return static_cast<int>(count.fetch_add(1) >= 0); }));
        }
      }
      for (auto& f : mine) {
        EXPECT_EQ(f.get(), 1);
      }
    });
  }
  for (auto& t : submitters) {
    t.join();
  }
  pool.wait_idle();
  EXPECT_EQ(count.load(), 4L * per_thread);
  EXPECT_EQ(pool.stats().completed, 4U * per_thread);
}

TEST(ThreadPoolStress, MoreSubmittingThreadsThanLanes) {
  // The pool has at most 16 injection lanes; 24 threads share them.
  simul::thread_pool pool({.workers = 3});
  std::atomic<long> count{0};
  constexpr int threads = 24;
  constexpr int per_thread = 4'000;
  std::vector<std::thread> submitters;
  for (int t = 0; t < threads; ++t) {
    submitters.emplace_back([&pool, &count] {
      auto last = pool.submit([] { return 0; });
      for (int i = 0; i < per_thread - 1; ++i) {
        pool.post([&count] { count.fetch_add(1, std::memory_order_relaxed); });
      }
      EXPECT_EQ(last.get(), 0);
    });
  }
  for (auto& thread : submitters) {
    thread.join();
  }
  pool.wait_idle();
  EXPECT_EQ(count.load(), static_cast<long>(threads) * (per_thread - 1));
  const auto s = pool.stats();
  EXPECT_EQ(s.submitted, static_cast<std::uint64_t>(threads) * per_thread);
  EXPECT_EQ(s.completed, static_cast<std::uint64_t>(threads) * per_thread);
  EXPECT_EQ(s.queued, 0U);
}

TEST(ThreadPoolStress, NestedSubmitsFromManyTasksWithStealing) {
  simul::thread_pool pool({.workers = 3});
  std::atomic<long> leaves{0};
  std::function<void(int)> spread = [&](int level) {
    if (level == 0) {
      leaves.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    std::vector<simul::future<void>> children;
    for (int i = 0; i < 4; ++i) {
      children.push_back(pool.submit(spread, level - 1));
    }
    for (auto& c : children) {
      c.get();
    }
  };
  for (int round = 0; round < 5; ++round) {
    pool.submit(spread, 6).get();
  }
  EXPECT_EQ(leaves.load(), 5L * 4096);
  pool.wait_idle();
  EXPECT_GT(pool.stats().completed, 5U * 4096);
}

TEST(ThreadPoolStress, CancelStorm) {
  simul::thread_pool pool({.workers = 2});
  std::atomic<long> ran{0};
  long cancelled = 0;
  constexpr int rounds = 20;
  constexpr int per_round = 2'000;
  for (int round = 0; round < rounds; ++round) {
    std::vector<simul::future<int>> futures;
    futures.reserve(per_round);
    for (int i = 0; i < per_round; ++i) {
      futures.push_back(pool.submit([&ran] { return static_cast<int>(ran.fetch_add(1)); }));
    }
    // Cancel from another thread while the workers race to start them.
    std::thread canceller([&futures, &cancelled] {
      for (std::size_t i = 0; i < futures.size(); i += 2) {
        if (futures[i].cancel()) {
          ++cancelled;
        }
      }
    });
    canceller.join();
    for (std::size_t i = 0; i < futures.size(); ++i) {
      auto& f = futures[i];
      f.wait();
      if (f.cancelled()) {
        EXPECT_EQ(i % 2, 0U);
        EXPECT_THROW((void)f.get(), simul::cancelled_error);
      } else {
        EXPECT_GE(f.get(), 0);
      }
    }
  }
  pool.wait_idle();
  const auto s = pool.stats();
  // Every task either ran or was cancelled, never both, never neither.
  EXPECT_EQ(ran.load() + cancelled, static_cast<long>(rounds) * per_round);
  EXPECT_EQ(s.cancelled, static_cast<std::uint64_t>(cancelled));
  EXPECT_EQ(s.completed, static_cast<std::uint64_t>(ran.load()));
}

TEST(ThreadPoolStress, ShutdownWhileOthersSubmit) {
  for (int round = 0; round < 20; ++round) {
    std::atomic<long> accepted{0};
    std::atomic<long> ran{0};
    std::atomic<long> refused{0};
    {
      simul::thread_pool pool({.workers = 2});
      std::vector<std::thread> submitters;
      std::atomic<bool> go{false};
      for (int t = 0; t < 3; ++t) {
        submitters.emplace_back([&] {
          while (!go.load()) {
            std::this_thread::yield();
          }
          for (int i = 0; i < 2'000; ++i) {
            try {
              pool.post([&ran] { ran.fetch_add(1); });
              accepted.fetch_add(1);
            } catch (const simul::broken_executor&) {
              refused.fetch_add(1);
            }
          }
        });
      }
      go = true;
      std::this_thread::sleep_for(std::chrono::microseconds(50 * round));
      pool.shutdown({.wait = round % 2 == 0, .cancel_pending = round % 3 == 0});
      for (auto& t : submitters) {
        t.join();
      }
      EXPECT_TRUE(pool.is_shutdown());
    }
    EXPECT_EQ(accepted.load() + refused.load(), 3 * 2'000);
    if (round % 3 != 0) {
      // Without cancel_pending, everything accepted ran before the pool died.
      EXPECT_EQ(ran.load(), accepted.load()) << "round " << round;
    } else {
      EXPECT_LE(ran.load(), accepted.load());
    }
  }
}

TEST(ThreadPoolStress, ShutdownCancelWhileNestedWorkRuns) {
  for (int round = 0; round < 10; ++round) {
    simul::thread_pool pool({.workers = 2});
    std::function<long(int)> tree = [&](int level) -> long {
      if (level == 0) {
        return 1;
      }
      try {
        auto a = pool.submit(tree, level - 1);
        auto b = pool.submit(tree, level - 1);
        return a.get() + b.get();
      } catch (const simul::error&) {
        return 0; // refused or cancelled: the pool is going away
      }
    };
    auto root = pool.submit(tree, 12);
    std::this_thread::sleep_for(1ms);
    pool.shutdown({.wait = true, .cancel_pending = true});
    EXPECT_TRUE(root.ready());
    if (!root.cancelled()) {
      EXPECT_LE(root.get(), 4096);
    }
  }
}

TEST(ThreadPoolStress, WaitIdleRacingWithSubmitters) {
  simul::thread_pool pool({.workers = 2});
  std::atomic<long> ran{0};
  for (int round = 0; round < 200; ++round) {
    const int n = 1 + round % 50;
    for (int i = 0; i < n; ++i) {
      pool.post([&ran] { ran.fetch_add(1); });
    }
    pool.wait_idle();
    ASSERT_EQ(pool.stats().running, 0U);
  }
  long expected = 0;
  for (int round = 0; round < 200; ++round) {
    expected += 1 + round % 50;
  }
  EXPECT_EQ(ran.load(), expected);
}

TEST(ThreadPoolStress, ManyShortLivedPools) {
  for (int round = 0; round < 100; ++round) {
    simul::thread_pool pool({.workers = 1 + static_cast<std::size_t>(round % 4)});
    auto f = pool.submit([round] { return round; });
    if (round % 2 == 0) {
      EXPECT_EQ(f.get(), round);
    }
  }
}
