#include <simul/threadpool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <numeric>
#include <ranges>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST(ThreadPoolMap, ResultsComeInInputOrder) {
  simul::thread_pool pool({.threads = 3});
  std::vector<int> items(1000);
  std::iota(items.begin(), items.end(), 0);
  for (std::size_t chunk : {0U, 1U, 7U, 64U, 5000U}) {
    auto out = pool.map([](int x) { return x * 2; }, items, {.chunksize = chunk});
    ASSERT_EQ(out.size(), items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      ASSERT_EQ(out[i], items[i] * 2) << "chunksize " << chunk;
    }
  }
}

TEST(ThreadPoolMap, CoreMapUsesThePoolsOwnMap) {
  simul::thread_pool pool({.threads = 2});
  std::vector<int> items{1, 2, 3, 4};
  std::vector<int> out = simul::map(pool, [](int x) { return x * x; }, items, {.chunksize = 2});
  EXPECT_EQ(out, (std::vector<int>{1, 4, 9, 16}));
}

TEST(ThreadPoolMap, EmptyInputGivesEmptyOutput) {
  simul::thread_pool pool({.threads = 1});
  std::vector<int> none;
  EXPECT_TRUE(pool.map([](int x) { return x; }, none).empty());
}

TEST(ThreadPoolMap, FirstExceptionInInputOrderIsRethrown) {
  simul::thread_pool pool({.threads = 2});
  std::vector<int> items(100);
  std::iota(items.begin(), items.end(), 0);
  // Told apart by type, not by message: reading the message of an exception
  // whose last reference a worker drops is a false positive under TSan
  // (libstdc++'s exception reference count is not instrumented).
  EXPECT_THROW((void)pool.map(
                   [](int x) {
                     if (x == 30) {
                       throw std::out_of_range("first");
                     }
                     if (x == 60) {
                       throw std::invalid_argument("second");
                     }
                     return x;
                   },
                   items, {.chunksize = 5}),
               std::out_of_range);
  pool.wait_idle();
  // Chunk 12 (item 60) is never read: the look-ahead stops at the failure.
  EXPECT_EQ(pool.stats().failed, 1U);
}

TEST(ThreadPoolMap, TimeoutThrowsAndCancelsTheRest) {
  simul::thread_pool pool({.threads = 1});
  std::vector<int> items(20, 1);
  std::atomic<int> ran{0};
  EXPECT_THROW((void)pool.map(
                   [&ran](int x) {
                     ran.fetch_add(1);
                     std::this_thread::sleep_for(30ms);
                     return x;
                   },
                   items, {.chunksize = 1, .timeout = 10ms}),
               simul::timeout_error);
  pool.wait_idle();
  EXPECT_LT(ran.load(), 20);
  EXPECT_GT(pool.stats().cancelled, 0U);
}

TEST(ThreadPoolMap, EndlessInputIsReadOnlyALittleAhead) {
  simul::thread_pool pool({.threads = 2});
  std::atomic<long> read{0};
  auto counted = std::views::iota(0L) | std::views::transform([&read](long x) {
                   read.fetch_add(1);
                   return x;
                 });
  auto results = pool.imap([](long x) { return x * x; }, counted, {.chunksize = 10});
  long taken = 0;
  for (long value : results) {
    EXPECT_EQ(value, taken * taken);
    if (++taken == 1000) {
      break;
    }
  }
  // At most lookahead() chunks beyond the one being consumed.
  EXPECT_LE(read.load(), 1000 + static_cast<long>(pool.lookahead() + 1) * 10);
}

TEST(ThreadPoolMap, ImapNextAndConversion) {
  simul::thread_pool pool({.threads = 2});
  auto results = pool.imap([](int x) { return x + 1; }, std::vector<int>{1, 2, 3});
  EXPECT_EQ(results.next(), 2);
  std::vector<int> rest = results.to_vector();
  EXPECT_EQ(rest, (std::vector<int>{3, 4}));
  EXPECT_EQ(results.next(), std::nullopt);
  std::vector<int> direct = pool.imap([](int x) { return x; }, std::vector<int>{5});
  EXPECT_EQ(direct, std::vector<int>{5});
}

TEST(ThreadPoolMap, AbandonedImapCancelsItsQueuedChunks) {
  simul::thread_pool pool({.threads = 1});
  std::atomic<int> ran{0};
  {
    auto results = pool.imap(
        [&ran](int x) {
          ran.fetch_add(1);
          std::this_thread::sleep_for(2ms);
          return x;
        },
        std::views::iota(0, 1000));
    EXPECT_EQ(results.next(), 0);
  }
  pool.wait_idle();
  EXPECT_LE(ran.load(), static_cast<int>(pool.lookahead()) + 2);
}

TEST(ThreadPoolMap, MapFromInsideATaskDoesNotDeadlock) {
  simul::thread_pool pool({.threads = 1});
  auto f = pool.submit([&pool] {
    auto v = pool.map([](int x) { return x * 3; }, std::vector<int>{1, 2, 3});
    return std::accumulate(v.begin(), v.end(), 0);
  });
  EXPECT_EQ(f.get(), 18);
}

TEST(ThreadPoolParallelFor, VisitsEveryIndexOnce) {
  simul::thread_pool pool({.threads = 3});
  std::vector<std::atomic<int>> hits(10'000);
  pool.parallel_for(0, 10'000, [&hits](int i) { hits[i].fetch_add(1); });
  for (auto& h : hits) {
    ASSERT_EQ(h.load(), 1);
  }
  std::vector<std::atomic<int>> some(100);
  pool.parallel_for(std::size_t{10}, std::size_t{90}, [&some](std::size_t i) { some[i].fetch_add(1); }, {.grain = 7});
  for (std::size_t i = 0; i < 100; ++i) {
    ASSERT_EQ(some[i].load(), (i >= 10 && i < 90) ? 1 : 0) << i;
  }
}

TEST(ThreadPoolParallelFor, NegativeRangesAndEmptyRanges) {
  simul::thread_pool pool({.threads = 2});
  std::atomic<long> sum{0};
  pool.parallel_for(-50, 50, [&sum](int i) { sum.fetch_add(i); }, {.grain = 3});
  EXPECT_EQ(sum.load(), -50);
  pool.parallel_for(5, 5, [](int) { FAIL(); });
  EXPECT_THROW(pool.parallel_for(5, 3, [](int) {}), simul::error);
}

TEST(ThreadPoolParallelFor, RethrowsTheFirstFailureAfterTheRestSettle) {
  simul::thread_pool pool({.threads = 2});
  std::atomic<int> live{0};
  try {
    pool.parallel_for(0, 1000,
                      [&live](int i) {
                        live.fetch_add(1);
                        if (i == 500) {
                          live.fetch_sub(1);
                          throw std::out_of_range("index 500");
                        }
                        live.fetch_sub(1);
                      },
                      {.grain = 10});
    ADD_FAILURE() << "no throw";
  } catch (const std::out_of_range&) {
    // Type only: see FirstExceptionInInputOrderIsRethrown.
  }
  EXPECT_EQ(live.load(), 0) << "parallel_for returned while parts still ran";
}

TEST(ThreadPoolParallelFor, NestedInsideATask) {
  simul::thread_pool pool({.threads = 1});
  auto f = pool.submit([&pool] {
    std::atomic<int> n{0};
    pool.parallel_for(0, 100, [&n](int) { n.fetch_add(1); });
    return n.load();
  });
  EXPECT_EQ(f.get(), 100);
}

TEST(ThreadPoolMap, MapAfterShutdownThrowsBrokenExecutor) {
  simul::thread_pool pool({.threads = 1});
  pool.shutdown();
  EXPECT_THROW((void)pool.map([](int x) { return x; }, std::vector<int>{1, 2, 3}), simul::broken_executor);
  EXPECT_THROW((void)pool.imap([](int x) { return x; }, std::vector<int>{1}), simul::broken_executor);
}

TEST(ThreadPoolMap, ShutdownMidIterationEndsImapWithBrokenExecutor) {
  simul::thread_pool pool({.threads = 1});
  auto results = pool.imap([](int x) { return x; }, std::views::iota(0, 100'000));
  EXPECT_EQ(results.next(), 0);
  pool.shutdown({.wait = false});
  bool threw = false;
  try {
    while (results.next()) {
    }
  } catch (const simul::broken_executor&) {
    threw = true;
  }
  EXPECT_TRUE(threw) << "the look-ahead could not submit more chunks";
}
