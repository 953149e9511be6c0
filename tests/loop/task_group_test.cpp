// task_group: structured concurrency with asyncio's rules.

#include <simul/loop.hpp>

#include "co_assert.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

simul::task<int> after(std::chrono::milliseconds d, int v) {
  co_await simul::sleep(d);
  co_return v;
}

simul::task<void> fail_after(std::chrono::milliseconds d, std::string message) {
  co_await simul::sleep(d);
  throw std::runtime_error(message);
}

simul::task<void> sleep_forever() { co_await simul::sleep(1h); }

} // namespace

TEST(TaskGroup, JoinWaitsForEveryTaskIncludingOnesAddedWhileWaiting) {
  auto main = []() -> simul::task<void> {
    std::vector<int> done;
    simul::task_group tg;
    auto record = [&](int v, std::chrono::milliseconds d) -> simul::task<void> {
      co_await simul::sleep(d);
      done.push_back(v);
    };
    auto spawner = [&]() -> simul::task<void> {
      co_await simul::sleep(2ms);
      tg.create_task(record(3, 5ms));
    };
    tg.create_task(record(1, 1ms));
    tg.create_task(spawner());
    co_await tg.join();
    EXPECT_EQ(done, (std::vector<int>{1, 3}));
    EXPECT_THROW(tg.create_task(after(1ms, 1)), simul::error); // finished
  };
  simul::run(main());
}

TEST(TaskGroup, FirstFailureCancelsSiblingsAndAllErrorsComeTogether) {
  auto main = []() -> simul::task<void> {
    bool sibling_cancelled = false;
    auto sibling = [&]() -> simul::task<void> {
      try {
        co_await simul::sleep(1h);
      } catch (const simul::cancelled_error&) {
        sibling_cancelled = true;
        throw;
      }
    };
    auto second = []() -> simul::task<void> {
      try {
        co_await simul::sleep(1h);
      } catch (const simul::cancelled_error&) {
        throw std::logic_error("cleanup failed"); // a second error, while cancelled
      }
    };
    try {
      co_await simul::with_task_group([&](simul::task_group& tg) -> simul::task<void> {
        tg.create_task(sibling());
        tg.create_task(second());
        tg.create_task(fail_after(2ms, "first"));
        co_await simul::sleep(1h); // the body is interrupted too
      });
      ADD_FAILURE() << "the group should throw";
    } catch (const simul::exception_group& g) {
      CO_ASSERT_EQ(g.exceptions().size(), 2u);
      EXPECT_THROW(std::rethrow_exception(g.exceptions()[0]), std::runtime_error);
      EXPECT_THROW(std::rethrow_exception(g.exceptions()[1]), std::logic_error);
      EXPECT_NE(std::string(g.what()).find("first"), std::string::npos);
      EXPECT_NE(std::string(g.what()).find("cleanup failed"), std::string::npos);
    }
    EXPECT_TRUE(sibling_cancelled);
    EXPECT_EQ(simul::current_task().cancelling(), 0); // the group took back its request
    co_await simul::sleep(1ms);                       // and nothing stays pending
  };
  simul::run(main());
}

TEST(TaskGroup, BodyExceptionCancelsTheTasksAndIsReportedInTheGroup) {
  auto main = []() -> simul::task<void> {
    auto t = simul::task_handle<void>();
    try {
      co_await simul::with_task_group([&](simul::task_group& tg) -> simul::task<void> {
        t = tg.create_task(sleep_forever());
        co_await simul::yield_now();
        throw std::runtime_error("body");
      });
    } catch (const simul::exception_group& g) {
      CO_ASSERT_EQ(g.exceptions().size(), 1u);
    }
    EXPECT_TRUE(t.cancelled());
  };
  simul::run(main());
}

TEST(TaskGroup, OutsideCancellationWhileJoiningCancelsTasksAndPropagates) {
  auto main = []() -> simul::task<void> {
    auto owner = []() -> simul::task<void> {
      simul::task_group tg;
      tg.create_task(sleep_forever());
      tg.create_task(sleep_forever());
      co_await tg.join();
    };
    auto t = simul::create_task(owner());
    co_await simul::sleep(1ms);
    t.cancel();
    EXPECT_THROW(co_await t, simul::cancelled_error);
    EXPECT_TRUE(t.cancelled());
  };
  simul::run(main());
}

TEST(TaskGroup, OutsideCancellationRacingAChildFailureIsNotLost) {
  // A child fails and the owner is cancelled from outside in the same
  // iteration: the errors are raised, and the outside cancellation is still
  // delivered at the owner's next await (asyncio gh-116720 family of races).
  auto main = []() -> simul::task<void> {
    bool next_await_cancelled = false;
    simul::event fail_now;
    auto failing = [](simul::event* e) -> simul::task<void> {
      co_await e->wait();
      throw std::runtime_error("child");
    };
    auto owner = [&]() -> simul::task<void> {
      try {
        co_await simul::with_task_group([&](simul::task_group& tg) -> simul::task<void> {
          tg.create_task(failing(&fail_now));
          co_await simul::sleep(1h);
        });
      } catch (const simul::exception_group&) {
      }
      try {
        co_await simul::sleep(1h);
      } catch (const simul::cancelled_error&) {
        next_await_cancelled = true;
        throw;
      }
    };
    auto t = simul::create_task(owner());
    co_await simul::sleep(1ms);
    fail_now.set(); // the child fails on the next iteration...
    t.cancel();     // ...which is when the owner wakes with the outside cancellation
    EXPECT_THROW(co_await t, simul::cancelled_error);
    EXPECT_TRUE(t.cancelled());
    EXPECT_TRUE(next_await_cancelled);
  };
  simul::run(main());
}

TEST(TaskGroup, CancelledChildrenAreNotErrors) {
  auto main = []() -> simul::task<void> {
    simul::task_group tg;
    auto t = tg.create_task(sleep_forever());
    auto ok = tg.create_task(after(2ms, 4));
    co_await simul::yield_now();
    t.cancel();
    co_await tg.join(); // no exception
    EXPECT_EQ(ok.result(), 4);
  };
  simul::run(main());
}

TEST(TaskGroup, OutsideTaskIsAnError) {
  simul::event_loop loop;
  loop.call_soon([] { EXPECT_THROW(simul::task_group{}, simul::error); });
  loop.run_once();
  loop.close();
}

TEST(TaskGroup, CancelFromAChildStopsTheGroupWhichEndsWithoutCancelledError) {
  auto main = []() -> simul::task<void> {
    int cancelled = 0;
    auto waiter = [&]() -> simul::task<void> {
      try {
        co_await simul::sleep(1h);
      } catch (const simul::cancelled_error&) {
        ++cancelled;
        throw;
      }
    };
    bool body_interrupted = false;
    co_await simul::with_task_group([&](simul::task_group& tg) -> simul::task<void> {
      tg.create_task(waiter());
      tg.create_task(waiter());
      tg.create_task([](simul::task_group* g) -> simul::task<void> {
        co_await simul::sleep(1ms);
        g->cancel(); // found what we were looking for: stop the others
      }(&tg));
      try {
        co_await simul::sleep(1h);
      } catch (const simul::cancelled_error&) {
        body_interrupted = true;
        throw;
      }
    });
    EXPECT_EQ(cancelled, 2);
    EXPECT_TRUE(body_interrupted);
    auto self = simul::current_task();
    EXPECT_EQ(self.cancelling(), 0);
    co_await simul::sleep(1ms); // the owning task goes on: nothing is left pending
  };
  simul::run(main());
}

TEST(TaskGroup, CancelAsTheBodysLastStatementLeavesNothingPending) {
  auto main = []() -> simul::task<int> {
    simul::task_group tg;
    tg.create_task(sleep_forever());
    tg.cancel();
    EXPECT_THROW(tg.create_task(after(1ms, 1)), simul::error); // shutting down
    co_await tg.join();
    tg.cancel(); // after join: does nothing
    co_await simul::sleep(1ms);
    co_return 7;
  };
  EXPECT_EQ(simul::run(main()), 7);
}

TEST(TaskGroup, CancelStillReportsErrorsRaisedWhileTheTasksUnwind) {
  auto main = []() -> simul::task<void> {
    auto stubborn = []() -> simul::task<void> {
      try {
        co_await simul::sleep(1h);
      } catch (const simul::cancelled_error&) {
        throw std::runtime_error("cleanup failed");
      }
    };
    try {
      co_await simul::with_task_group([&](simul::task_group& tg) -> simul::task<void> {
        tg.create_task(stubborn());
        co_await simul::sleep(1ms);
        tg.cancel();
        co_await simul::sleep(1h);
      });
      ADD_FAILURE() << "the group should throw the cleanup's error";
    } catch (const simul::exception_group& g) {
      CO_ASSERT_EQ(g.exceptions().size(), 1u);
      EXPECT_THROW(std::rethrow_exception(g.exceptions()[0]), std::runtime_error);
    }
    co_await simul::sleep(1ms);
  };
  simul::run(main());
}

TEST(TaskGroup, CancelDoesNotSwallowACancellationFromOutside) {
  auto main = []() -> simul::task<void> {
    auto owner = []() -> simul::task<void> {
      co_await simul::with_task_group([&](simul::task_group& tg) -> simul::task<void> {
        tg.create_task(sleep_forever());
        co_await simul::sleep(1ms);
        tg.cancel();
        co_await simul::sleep(1h);
      });
    };
    auto t = simul::create_task(owner());
    co_await simul::sleep(1ms);
    t.cancel("from outside"); // lands around the group's own cancel
    EXPECT_THROW(co_await t, simul::cancelled_error);
    EXPECT_TRUE(t.cancelled());
  };
  simul::run(main());
}

// cancel() from a child, a child failure and a cancellation from outside,
// each at a random yield, over many rounds: the owner ends with exactly one
// of the outcomes the rules allow, and never with a cancellation left over.
TEST(TaskGroup, StressCancelRacingFailuresAndOutsideCancellation) {
  std::mt19937 rng(2026);
  int clean = 0;
  int grouped = 0;
  int cancelled = 0;
  for (int round = 0; round < 300; ++round) {
    const int cancel_at = static_cast<int>(rng() % 8);
    const int fail_at = static_cast<int>(rng() % 12);    // >= 8: nobody fails
    const int outside_at = static_cast<int>(rng() % 16); // >= 8: no outside cancel
    auto yields = [](int n) -> simul::task<void> {
      for (int i = 0; i < n; ++i) {
        co_await simul::yield_now();
      }
    };
    auto owner = [&]() -> simul::task<int> {
      co_await simul::with_task_group([&](simul::task_group& tg) -> simul::task<void> {
        tg.create_task([](simul::task_group* g, int at, decltype(yields) y) -> simul::task<void> {
          co_await y(at);
          g->cancel();
        }(&tg, cancel_at, yields));
        if (fail_at < 8) {
          tg.create_task([](int at, decltype(yields) y) -> simul::task<void> {
            co_await y(at);
            throw std::runtime_error("child failed");
          }(fail_at, yields));
        }
        tg.create_task(sleep_forever());
        co_await simul::sleep(1h);
      });
      // Nothing may be left pending for the owner once the group is done.
      co_await simul::yield_now();
      co_return simul::current_task().cancelling();
    };
    auto main = [&]() -> simul::task<void> {
      auto t = simul::create_task(owner());
      if (outside_at < 8) {
        co_await yields(outside_at);
        t.cancel("from outside");
      }
      try {
        EXPECT_EQ(co_await t, 0);
        ++clean;
      } catch (const simul::exception_group& g) {
        EXPECT_EQ(g.exceptions().size(), 1u);
        EXPECT_LT(fail_at, 8);
        ++grouped;
      } catch (const simul::cancelled_error&) {
        EXPECT_LT(outside_at, 8) << "a cancellation nobody asked for escaped the group";
        ++cancelled;
      }
    };
    simul::run(main());
  }
  EXPECT_GT(clean, 0);
  EXPECT_GT(grouped, 0);
  EXPECT_GT(cancelled, 0);
}
