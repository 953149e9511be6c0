// concurrent.futures' own tests (Lib/test/test_concurrent_futures), ported:
// each test names the CPython test it mirrors.

#include <simul/core/executor.hpp>
#include <simul/core/future.hpp>
#include <simul/core/map.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <list>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

// test_future.py: test_cancel. Cancelling a cancelled future is true again;
// a finished or running one is not cancelled.
TEST(FutureConformance, CancelTwiceIsTrueFinishedOrRunningIsFalse) {
  simul::promise<int> pending;
  auto f = pending.get_future();
  EXPECT_TRUE(f.cancel());
  EXPECT_TRUE(f.cancel());
  EXPECT_TRUE(f.cancelled());

  simul::promise<int> running;
  auto r = running.get_future();
  ASSERT_TRUE(running.set_running_or_notify_cancel());
  EXPECT_FALSE(r.cancel()); // no cancel hook: it cannot be interrupted
  EXPECT_FALSE(r.cancelled());

  simul::promise<int> finished;
  auto d = finished.get_future();
  finished.set_value(1);
  EXPECT_FALSE(d.cancel());
  EXPECT_EQ(d.get(), 1);
}

// test_future.py: test_running.
TEST(FutureConformance, RunningOnlyBetweenStartAndResult) {
  simul::promise<int> p;
  auto f = p.get_future();
  EXPECT_FALSE(f.running());
  ASSERT_TRUE(p.set_running_or_notify_cancel());
  EXPECT_TRUE(f.running());
  p.set_value(3);
  EXPECT_FALSE(f.running());
  simul::promise<int> c;
  auto g = c.get_future();
  g.cancel();
  EXPECT_FALSE(g.running());
}

// test_future.py: test_result_with_timeout / test_exception_with_timeout.
TEST(FutureConformance, GetAndExceptionWithTimeout) {
  simul::promise<int> p;
  auto f = p.get_future();
  EXPECT_THROW((void)f.get(5ms), simul::timeout_error);
  EXPECT_THROW((void)f.exception(5ms), simul::timeout_error);
  EXPECT_FALSE(f.ready()); // nothing was taken or lost
  std::thread producer([&] {
    std::this_thread::sleep_for(5ms);
    p.set_value(42);
  });
  EXPECT_EQ(f.get(10s), 42);
  producer.join();

  simul::promise<void> q;
  auto g = q.get_future();
  q.set_exception(std::make_exception_ptr(std::runtime_error("boom")));
  auto e = g.exception(0ms);
  ASSERT_TRUE(e);
  EXPECT_THROW(std::rethrow_exception(e), std::runtime_error);
  EXPECT_THROW(g.get(simul::no_timeout), std::runtime_error);

  simul::promise<int> never;
  auto h = never.get_future();
  EXPECT_THROW((void)h.get(-1s), simul::timeout_error);
  h.cancel();
  EXPECT_THROW((void)h.get(simul::no_timeout), simul::cancelled_error);
}

// test_future.py: test_done_callback_raises. A callback that throws is
// reported and the others still run; the program goes on.
TEST(FutureConformance, OnReadyCallbackThatThrowsIsReportedAndOthersRun) {
  simul::promise<int> p;
  auto f = p.get_future();
  int ran = 0;
  f.on_ready([&] { ++ran; });
  f.on_ready([] { throw std::runtime_error("doh!"); });
  f.on_ready([&] { ++ran; });
  testing::internal::CaptureStderr();
  p.set_value(5);
  f.on_ready([] { throw std::runtime_error("again"); }); // ready already: runs now
  const auto err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(ran, 2);
  EXPECT_NE(err.find("doh!"), std::string::npos) << err;
  EXPECT_NE(err.find("again"), std::string::npos) << err;
  EXPECT_EQ(f.get(), 5);
}

// A throwing `then` continuation fails the future it returned.
TEST(FutureConformance, ThenContinuationThatThrowsFailsItsFuture) {
  simul::promise<int> p;
  auto f = p.get_future();
  auto g = f.then([](int) -> int { throw std::runtime_error("in then"); });
  p.set_value(1);
  EXPECT_THROW((void)g.get(), std::runtime_error);
}

// test_thread_pool.py / executor.py: test_map (map over two iterables, zip).
TEST(FutureConformance, MapZipsSeveralRangesUpToTheShortest) {
  simul::inline_executor ex;
  std::vector<int> a{1, 2, 3, 4};
  std::list<int> b{10, 20, 30};
  auto sums = simul::map(
      ex, [](int x, int y) { return x + y; }, a, b);
  EXPECT_EQ(sums, (std::vector<int>{11, 22, 33}));
  std::vector<std::string> names{"a", "b"};
  auto joined = simul::map(
      ex, [](int x, int y, const std::string& s) { return s + std::to_string(x * y); }, {.chunksize = 2}, a, b, names);
  EXPECT_EQ(joined, (std::vector<std::string>{"a10", "b40"}));
  std::vector<int> empty;
  EXPECT_TRUE(simul::map(
                  ex, [](int x, int y) { return x + y; }, a, empty)
                  .empty());
  EXPECT_THROW(simul::map(
                   ex, [](int x, int) -> int { throw std::runtime_error(std::to_string(x)); }, a, b),
               std::runtime_error);
}
