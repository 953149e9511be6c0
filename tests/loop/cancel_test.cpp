// Cancellation, asyncio's rules one test each.

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

simul::task<void> sleep_forever() { co_await simul::sleep(1h); }

} // namespace

TEST(Cancel, CancelMakesTheCurrentAwaitThrowAndTheTaskEndsCancelled) {
  auto main = []() -> simul::task<void> {
    std::string trace;
    auto victim = [&]() -> simul::task<void> {
      try {
        co_await simul::sleep(1h);
      } catch (const simul::cancelled_error& e) {
        trace = std::string("caught: ") + e.what();
        throw;
      }
    };
    auto t = simul::create_task(victim());
    co_await simul::yield_now();
    EXPECT_TRUE(t.cancel("stop it"));
    EXPECT_EQ(t.cancelling(), 1);
    EXPECT_THROW(co_await t, simul::cancelled_error);
    EXPECT_TRUE(t.cancelled());
    EXPECT_EQ(trace, "caught: stop it");
    EXPECT_FALSE(t.cancel()); // done: nothing to cancel
    EXPECT_THROW((void)t.exception(), simul::cancelled_error);
  };
  simul::run(main());
}

TEST(Cancel, TaskCancelledBeforeItStartsNeverRunsItsBody) {
  auto main = []() -> simul::task<void> {
    bool ran = false;
    auto body = [&]() -> simul::task<void> {
      ran = true;
      co_return;
    };
    auto t = simul::create_task(body());
    t.cancel();
    EXPECT_THROW(co_await t, simul::cancelled_error);
    EXPECT_FALSE(ran);
  };
  simul::run(main());
}

TEST(Cancel, FrameUnwindsNormallyRunningDestructors) {
  auto main = []() -> simul::task<void> {
    int destroyed = 0;
    struct guard {
      int* n;
      ~guard() { ++*n; }
    };
    auto inner = [&]() -> simul::task<void> {
      guard g{&destroyed};
      co_await simul::sleep(1h);
    };
    auto outer = [&]() -> simul::task<void> {
      guard g{&destroyed};
      co_await inner();
    };
    auto t = simul::create_task(outer());
    co_await simul::yield_now();
    t.cancel();
    EXPECT_THROW(co_await t, simul::cancelled_error);
    EXPECT_EQ(destroyed, 2);
  };
  simul::run(main());
}

TEST(Cancel, SwallowedCancellationLetsTheTaskFinishAndUncancelResetsTheCount) {
  auto main = []() -> simul::task<void> {
    auto stubborn = []() -> simul::task<int> {
      try {
        co_await simul::sleep(1h);
      } catch (const simul::cancelled_error&) {
        EXPECT_EQ(simul::current_task().cancelling(), 1);
        EXPECT_EQ(simul::current_task().uncancel(), 0);
      }
      co_await simul::yield_now(); // no cancellation pending any more
      co_return 5;
    };
    auto t = simul::create_task(stubborn());
    co_await simul::yield_now();
    t.cancel();
    EXPECT_EQ(co_await t, 5);
    EXPECT_FALSE(t.cancelled());
  };
  simul::run(main());
}

TEST(Cancel, CancelWhileReadyIsDeliveredAtTheNextAwaitExactlyOnce) {
  auto main = []() -> simul::task<void> {
    int caught = 0;
    auto worker = [&]() -> simul::task<void> {
      try {
        co_await simul::yield_now(); // cancelled while its wake-up is queued
      } catch (const simul::cancelled_error&) {
        ++caught;
      }
      co_await simul::yield_now(); // must not throw a second time
      co_await simul::sleep(1ms);
    };
    auto t = simul::create_task(worker());
    co_await simul::yield_now(); // worker is now suspended in yield_now, its step queued
    t.cancel();
    t.cancel(); // a second request before delivery: still one throw
    co_await t;
    EXPECT_EQ(caught, 1);
    EXPECT_EQ(t.cancelling(), 2);
  };
  simul::run(main());
}

TEST(Cancel, SelfCancelThrowsAtTheNextSuspension) {
  auto main = []() -> simul::task<void> {
    auto self_cancel = []() -> simul::task<void> {
      simul::current_task().cancel("self");
      co_await simul::sleep(1h); // throws at once, does not sleep
    };
    auto t = simul::create_task(self_cancel());
    EXPECT_THROW(co_await t, simul::cancelled_error);
  };
  simul::run(main());
}

TEST(Cancel, CancellingATaskThatAwaitsAnotherTaskCancelsThatOneToo) {
  auto main = []() -> simul::task<void> {
    auto inner = simul::create_task(sleep_forever());
    auto waiter_body = [](simul::task_handle<void> in) -> simul::task<void> { co_await in; };
    auto outer = simul::create_task(waiter_body(inner));
    co_await simul::yield_now();
    co_await simul::yield_now();
    outer.cancel();
    EXPECT_THROW(co_await outer, simul::cancelled_error);
    EXPECT_TRUE(inner.cancelled());
    EXPECT_TRUE(outer.cancelled());
  };
  simul::run(main());
}

TEST(Cancel, CancelledErrorRaisedWithoutCancelStillCancelsTheTask) {
  auto main = []() -> simul::task<void> {
    auto raiser = []() -> simul::task<void> {
      co_await simul::yield_now();
      throw simul::cancelled_error("by hand");
    };
    auto t = simul::create_task(raiser());
    EXPECT_THROW(co_await t, simul::cancelled_error);
    EXPECT_TRUE(t.cancelled());
  };
  simul::run(main());
}

TEST(Cancel, CancelledSleepLeavesNoTimerBehind) {
  simul::event_loop loop;
  auto main = []() -> simul::task<void> {
    std::vector<simul::task_handle<void>> tasks;
    for (int i = 0; i < 100; ++i) {
      tasks.push_back(simul::create_task(sleep_forever()));
    }
    co_await simul::yield_now();
    for (auto& t : tasks) {
      t.cancel();
    }
    for (auto& t : tasks) {
      EXPECT_THROW(co_await t, simul::cancelled_error);
    }
  };
  loop.run_until_complete(main());
  EXPECT_FALSE(loop.run_nowait()); // no timers, no tasks, nothing queued
  loop.close();
}

TEST(Cancel, StressCancelAtRandomAwaitsNeverLosesOrDoublesACancellation) {
  std::mt19937 rng(12345);
  int cancelled_rounds = 0;
  int finished_rounds = 0;
  for (int round = 0; round < 200; ++round) {
    const int cancel_after = static_cast<int>(rng() % 40);
    auto main = [&](int after) -> simul::task<void> {
      int caught = 0;
      int finished = 0;
      auto worker = [&]() -> simul::task<void> {
        try {
          for (int i = 0; i < 10; ++i) {
            if (i % 5 == 4) {
              co_await simul::sleep(std::chrono::microseconds(100));
            } else {
              co_await simul::yield_now();
            }
          }
          ++finished;
        } catch (const simul::cancelled_error&) {
          ++caught;
          throw;
        }
      };
      auto t = simul::create_task(worker());
      if (after % 4 == 0) {
        while (!t.done()) { // let the worker finish: the cancel must then be refused
          co_await simul::yield_now();
        }
      }
      for (int i = 0; i < after; ++i) {
        co_await simul::yield_now();
      }
      const bool accepted = t.cancel();
      try {
        co_await t;
      } catch (const simul::cancelled_error&) {
      }
      // Accepted means delivered exactly once (the body never started, or it
      // caught it once); refused means the task had finished.
      ++(accepted ? cancelled_rounds : finished_rounds);
      if (accepted) {
        EXPECT_TRUE(t.cancelled());
        EXPECT_LE(caught, 1);
        EXPECT_EQ(finished, 0);
      } else {
        EXPECT_EQ(finished, 1);
        EXPECT_EQ(caught, 0);
      }
    };
    simul::run(main(cancel_after));
  }
  // Both outcomes were exercised.
  EXPECT_GT(cancelled_rounds, 0);
  EXPECT_GT(finished_rounds, 0);
}
