// The callback loop: ordering, timers, thread-safe calls, errors, embedding.

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST(EventLoop, CallSoonRunsInOrderOnNextIteration) {
  simul::event_loop loop;
  std::vector<int> order;
  loop.call_soon([&] {
    order.push_back(1);
    loop.call_soon([&] { order.push_back(3); });
  });
  loop.call_soon([&] { order.push_back(2); });
  loop.run_once();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  loop.run_once();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  loop.close();
  EXPECT_TRUE(loop.is_closed());
}

TEST(EventLoop, CancelledHandleNeverRuns) {
  simul::event_loop loop;
  bool ran = false;
  auto h = loop.call_soon([&] { ran = true; });
  h.cancel();
  EXPECT_TRUE(h.cancelled());
  auto t = loop.call_later(1ms, [&] { ran = true; });
  t.cancel();
  loop.call_later(5ms, [&] { loop.stop(); });
  loop.run();
  EXPECT_FALSE(ran);
  loop.close();
}

TEST(EventLoop, CallLaterFiresInDeadlineOrderAndNotEarly) {
  simul::event_loop loop;
  std::vector<int> order;
  const auto start = loop.time();
  simul::event_loop::clock::time_point fired_at{};
  loop.call_later(20ms, [&] {
    order.push_back(20);
    fired_at = loop.time();
    loop.stop();
  });
  loop.call_later(5ms, [&] { order.push_back(5); });
  auto h = loop.call_at(start + 10ms, [&] { order.push_back(10); });
  EXPECT_GE(h.when(), start + 10ms);
  loop.run();
  EXPECT_EQ(order, (std::vector<int>{5, 10, 20}));
  EXPECT_GE(fired_at - start, 20ms);
  loop.close();
}

TEST(EventLoop, StopBeforeRunRunsOneIteration) {
  simul::event_loop loop;
  int n = 0;
  loop.call_soon([&] { ++n; });
  loop.stop();
  loop.run();
  EXPECT_EQ(n, 1);
  loop.close();
}

TEST(EventLoop, ExceptionInCallbackGoesToHandler) {
  simul::event_loop loop;
  std::vector<std::string> seen;
  loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context& ctx) {
    seen.push_back(ctx.message);
    try {
      std::rethrow_exception(ctx.exception);
    } catch (const std::runtime_error& e) {
      seen.emplace_back(e.what());
    }
  });
  loop.call_soon([] { throw std::runtime_error("boom"); });
  bool after = false;
  loop.call_soon([&] { after = true; });
  loop.run_once();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], "boom");
  EXPECT_TRUE(after);
  loop.close();
}

TEST(EventLoop, CallSoonThreadsafeFromFourThreadsRunsEverything) {
  simul::event_loop loop;
  constexpr int per_thread = 20000;
  int count = 0; // only the loop thread touches it
  std::atomic<int> finished{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < per_thread; ++j) {
        loop.call_soon_threadsafe([&] { ++count; });
      }
      loop.call_soon_threadsafe([&] {
        if (++finished == 4) {
          loop.call_soon([&] { loop.stop(); });
        }
      });
    });
  }
  loop.run();
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(count, 4 * per_thread);
  loop.close();
  EXPECT_THROW(loop.call_soon_threadsafe([] {}), simul::error);
}

TEST(EventLoop, StopFromAnotherThreadWakesTheLoop) {
  simul::event_loop loop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(10ms);
    loop.stop();
  });
  loop.run(); // would block forever if stop() did not wake the poll
  stopper.join();
  loop.close();
}

TEST(EventLoop, MisuseIsAClearError) {
  simul::event_loop loop;
  loop.call_soon([&] {
    EXPECT_THROW(loop.run(), simul::error);
    EXPECT_THROW(loop.close(), simul::error);
    simul::event_loop other;
    EXPECT_THROW(other.run_once(), simul::error); // one loop per thread
    other.close();
    EXPECT_EQ(&simul::get_running_loop(), &loop);
  });
  loop.run_once();
  EXPECT_THROW(simul::get_running_loop(), simul::error);
  loop.close();
  loop.close(); // idempotent
  EXPECT_THROW(loop.call_soon([] {}), simul::error);
  EXPECT_THROW(loop.run(), simul::error);
  EXPECT_THROW((void)loop.backend_fd(), simul::error);
}

TEST(EventLoop, DebugModeRejectsCallsFromOtherThreads) {
  simul::event_loop loop;
  loop.set_debug(true);
  EXPECT_TRUE(loop.get_debug());
  bool threw = false;
  loop.call_soon([&] {
    std::thread other([&] {
      try {
        loop.call_soon([] {});
      } catch (const simul::error&) {
        threw = true;
      }
    });
    other.join();
  });
  loop.run_once();
  EXPECT_TRUE(threw);
  loop.close();
}

TEST(EventLoop, DebugModeReportsSlowCallbacks) {
  simul::event_loop loop;
  loop.set_debug(true);
  loop.set_slow_callback_duration(5ms);
  std::vector<std::string> seen;
  loop.set_exception_handler(
      [&](simul::event_loop&, const simul::exception_context& ctx) { seen.push_back(ctx.message); });
  loop.call_soon([] { std::this_thread::sleep_for(10ms); });
  loop.run_once();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_NE(seen[0].find("took"), std::string::npos);
  loop.close();
}

// A timer two centuries away (what a saturated deadline looks like) must not
// wrap the host's poll timeout into a negative number.
TEST(EventLoop, BackendTimeoutOfAFarTimerStaysPositive) {
  simul::event_loop loop;
  auto far = loop.call_later(std::chrono::hours(24 * 365 * 200), [] {});
  EXPECT_GT(loop.backend_timeout(), 0);
  far.cancel();
  loop.close();
}

TEST(EventLoop, EmbeddedInAHostLoopWithBackendFd) {
  simul::event_loop loop;
  int fired = 0;
  loop.call_later(5ms, [&] { ++fired; });
  loop.call_later(10ms, [&] { ++fired; });
  const int fd = loop.backend_fd();
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 1000 && fired < 2; ++i) {
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, loop.backend_timeout());
    loop.run_nowait();
  }
  EXPECT_EQ(fired, 2);
  EXPECT_FALSE(loop.run_nowait()); // nothing pending any more
  loop.close();
}

TEST(EventLoop, SubmitModelsTheExecutorConcept) {
  static_assert(simul::executor<simul::event_loop>);
  simul::event_loop loop;
  std::thread::id ran_on;
  auto f = loop.submit(
      [&](int x) {
        ran_on = std::this_thread::get_id();
        return x * 2;
      },
      21);
  std::thread waiter([&] {
    EXPECT_EQ(f.get(), 42);
    loop.stop();
  });
  loop.run();
  waiter.join();
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  loop.shutdown();
  EXPECT_THROW((void)loop.submit([] { return 1; }), simul::broken_executor);
  loop.close();
}

namespace {
// Counts its copies: a result handed out by run / run_until_complete should
// move out of a task nobody else can read again.
struct copy_counter {
  static inline int copies = 0;
  std::vector<int> payload;
  explicit copy_counter(int n) : payload(static_cast<std::size_t>(n), 7) {}
  copy_counter(const copy_counter& other) : payload(other.payload) { ++copies; }
  copy_counter(copy_counter&&) noexcept = default;
  copy_counter& operator=(const copy_counter&) = delete;
  copy_counter& operator=(copy_counter&&) noexcept = default;
  ~copy_counter() = default;
};

simul::task<copy_counter> make_counter(int n) {
  co_await simul::yield_now();
  co_return copy_counter(n);
}
} // namespace

TEST(EventLoop, RunAndRunUntilCompleteMoveTheResultOfATaskNobodyElseHolds) {
  copy_counter::copies = 0;
  EXPECT_EQ(simul::run(make_counter(1000)).payload.size(), 1000U);
  EXPECT_EQ(copy_counter::copies, 0);

  simul::event_loop loop;
  EXPECT_EQ(loop.run_until_complete(make_counter(10)).payload.size(), 10U);
  EXPECT_EQ(copy_counter::copies, 0);
  // A handle the caller keeps: its result stays readable, so it is copied.
  auto kept = loop.create_task(make_counter(3));
  EXPECT_EQ(loop.run_until_complete(kept).payload.size(), 3U);
  EXPECT_EQ(copy_counter::copies, 1);
  EXPECT_EQ(kept.result().payload.size(), 3U);
  EXPECT_EQ(copy_counter::copies, 2);
  // A handle moved in is the last reference: moved.
  auto given = loop.create_task(make_counter(4));
  EXPECT_EQ(loop.run_until_complete(std::move(given)).payload.size(), 4U);
  EXPECT_EQ(copy_counter::copies, 2);
  loop.close();
}
