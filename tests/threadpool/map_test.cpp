#include <simul/threadpool.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <numeric>
#include <ranges>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST(ThreadPoolMap, ResultsComeInInputOrder) {
  simul::thread_pool pool({.workers = 3});
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
  simul::thread_pool pool({.workers = 2});
  std::vector<int> items{1, 2, 3, 4};
  std::vector<int> out = simul::map(pool, [](int x) { return x * x; }, items, {.chunksize = 2});
  EXPECT_EQ(out, (std::vector<int>{1, 4, 9, 16}));
}

TEST(ThreadPoolMap, EmptyInputGivesEmptyOutput) {
  simul::thread_pool pool({.workers = 1});
  std::vector<int> none;
  EXPECT_TRUE(pool.map([](int x) { return x; }, none).empty());
}

TEST(ThreadPoolMap, FirstExceptionInInputOrderIsRethrown) {
  simul::thread_pool pool({.workers = 2});
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
  simul::thread_pool pool({.workers = 1});
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
  simul::thread_pool pool({.workers = 2});
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
  // At most max_inflight (2 per worker by default) chunks beyond the one being consumed.
  EXPECT_LE(read.load(), 1000 + static_cast<long>((2 * pool.workers()) + 1) * 10);
}

TEST(ThreadPoolMap, ImapNextAndConversion) {
  simul::thread_pool pool({.workers = 2});
  auto results = pool.imap([](int x) { return x + 1; }, std::vector<int>{1, 2, 3});
  EXPECT_EQ(results.next(), 2);
  std::vector<int> rest = results.to_vector();
  EXPECT_EQ(rest, (std::vector<int>{3, 4}));
  EXPECT_EQ(results.next(), std::nullopt);
  std::vector<int> direct = pool.imap([](int x) { return x; }, std::vector<int>{5});
  EXPECT_EQ(direct, std::vector<int>{5});
}

TEST(ThreadPoolMap, AbandonedImapCancelsItsQueuedChunks) {
  simul::thread_pool pool({.workers = 1});
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
  EXPECT_LE(ran.load(), static_cast<int>((2 * pool.workers())) + 2);
}

TEST(ThreadPoolMap, MapFromInsideATaskDoesNotDeadlock) {
  simul::thread_pool pool({.workers = 1});
  auto f = pool.submit([&pool] {
    auto v = pool.map([](int x) { return x * 3; }, std::vector<int>{1, 2, 3});
    return std::accumulate(v.begin(), v.end(), 0);
  });
  EXPECT_EQ(f.get(), 18);
}

TEST(ThreadPoolParallelFor, VisitsEveryIndexOnce) {
  simul::thread_pool pool({.workers = 3});
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
  simul::thread_pool pool({.workers = 2});
  std::atomic<long> sum{0};
  pool.parallel_for(-50, 50, [&sum](int i) { sum.fetch_add(i); }, {.grain = 3});
  EXPECT_EQ(sum.load(), -50);
  pool.parallel_for(5, 5, [](int) { FAIL(); });
  EXPECT_THROW(pool.parallel_for(5, 3, [](int) {}), simul::error);
}

TEST(ThreadPoolParallelFor, RethrowsTheFirstFailureAfterTheRestSettle) {
  simul::thread_pool pool({.workers = 2});
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
  simul::thread_pool pool({.workers = 1});
  auto f = pool.submit([&pool] {
    std::atomic<int> n{0};
    pool.parallel_for(0, 100, [&n](int) { n.fetch_add(1); });
    return n.load();
  });
  EXPECT_EQ(f.get(), 100);
}

TEST(ThreadPoolMap, MapAfterShutdownThrowsBrokenExecutor) {
  simul::thread_pool pool({.workers = 1});
  pool.shutdown();
  EXPECT_THROW((void)pool.map([](int x) { return x; }, std::vector<int>{1, 2, 3}), simul::broken_executor);
  EXPECT_THROW((void)pool.imap([](int x) { return x; }, std::vector<int>{1}), simul::broken_executor);
}

TEST(ThreadPoolMap, ShutdownMidIterationEndsImapWithBrokenExecutor) {
  simul::thread_pool pool({.workers = 1});
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

// One engine (simul::imap_range, core/imap.hpp) behind every pool's map: the
// thread pool now has imap_unordered and max_inflight, as the process pool.

TEST(ThreadPoolMap, ImapUnorderedYieldsEveryResultOnceAndFastChunksFirst) {
  simul::thread_pool pool({.workers = 2});
  std::vector<int> got;
  for (int r : pool.imap_unordered(
           [](int x) {
             if (x == 0) {
               std::this_thread::sleep_for(50ms); // the first chunk finishes last
             }
             return x * x;
           },
           std::views::iota(0, 40))) {
    got.push_back(r);
  }
  ASSERT_EQ(got.size(), 40U);
  EXPECT_NE(got.front(), 0) << "imap_unordered waited for the slow first chunk";
  std::sort(got.begin(), got.end());
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(got[i], i * i);
  }
}

TEST(ThreadPoolMap, MaxInflightBoundsHowFarImapReadsAhead) {
  simul::thread_pool pool({.workers = 2});
  std::atomic<long> read{0};
  auto counted = std::views::iota(0L) | std::views::transform([&read](long x) {
                   read.fetch_add(1);
                   return x;
                 });
  auto results = pool.imap([](long x) { return x; }, counted, {.chunksize = 5, .max_inflight = 1});
  EXPECT_EQ(results.next(), 0);
  EXPECT_LE(read.load(), 2 * 5 + 1) << "more than one chunk beyond the one being consumed";
}

TEST(ThreadPoolMap, ImapUnorderedTimesOutWithTimeoutError) {
  simul::thread_pool pool({.workers = 1});
  auto results = pool.imap_unordered(
      [](int x) {
        std::this_thread::sleep_for(200ms);
        return x;
      },
      std::vector<int>{1, 2}, {.timeout = 20ms});
  EXPECT_THROW((void)results.next(), simul::timeout_error);
  EXPECT_EQ(results.next(), std::nullopt) << "the range is finished after an error";
}

// An executor with `submit` only.
struct plain_executor {
  simul::thread_pool* pool;
  template <class F, class... A>
  auto submit(F&& f, A&&... a) {
    return pool->submit(std::forward<F>(f), std::forward<A>(a)...);
  }
};

TEST(ThreadPoolMap, GenericMapHonoursMaxInflight) {
  simul::thread_pool pool({.workers = 2});
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  std::vector<int> items(40);
  std::iota(items.begin(), items.end(), 0);
  // A plain executor wrapper has no map of its own: simul::map drives it.
  plain_executor ex{&pool};
  auto out = simul::map(ex,
                        [&](int x) {
                          int now = running.fetch_add(1) + 1;
                          int seen = most.load();
                          while (now > seen && !most.compare_exchange_weak(seen, now)) {
                          }
                          std::this_thread::sleep_for(1ms);
                          running.fetch_sub(1);
                          return x + 1;
                        },
                        items, {.max_inflight = 1});
  ASSERT_EQ(out.size(), 40U);
  EXPECT_EQ(out.back(), 40);
  EXPECT_EQ(most.load(), 1) << "max_inflight = 1 let two chunks run at once";
}

TEST(ThreadPoolMap, OldSpellingsStillWork) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  std::vector<int> none; // outlives the range that refers to it
  simul::thread_pool pool({.threads = 3});
  EXPECT_EQ(pool.size(), 3U);
  EXPECT_EQ(pool.workers(), 3U);
  EXPECT_EQ(pool.lookahead(), 6U);
  EXPECT_EQ(pool.stats().threads, 3U);
  simul::map_results<simul::thread_pool, std::views::all_t<std::vector<int>&>, int (*)(int)> results = pool.imap(
      +[](int x) { return -x; }, none);
#pragma GCC diagnostic pop
  EXPECT_EQ(results.next(), std::nullopt);
}
