// gather, wait, wait_for, as_completed, shield, timeout: asyncio's rules.

#include <simul/loop.hpp>

#include "co_assert.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

using namespace std::chrono_literals;

namespace {

simul::task<int> after(std::chrono::milliseconds d, int v) {
  co_await simul::sleep(d);
  co_return v;
}

simul::task<void> nothing_after(std::chrono::milliseconds d) { co_await simul::sleep(d); }

simul::task<void> fail_after(std::chrono::milliseconds d, std::string message) {
  co_await simul::sleep(d);
  throw std::runtime_error(message);
}

simul::task<int> fail_int_after(std::chrono::milliseconds d, std::string message) {
  co_await simul::sleep(d);
  throw std::runtime_error(message);
}

simul::task<void> sleep_forever() { co_await simul::sleep(1h); }

} // namespace

TEST(Gather, VariadicGivesATupleInArgumentOrder) {
  auto main = []() -> simul::task<void> {
    auto [a, b, c] = co_await simul::gather(after(20ms, 1), after(5ms, 2), nothing_after(1ms));
    EXPECT_EQ(a, 1);
    EXPECT_EQ(b, 2);
    EXPECT_EQ(c, std::monostate{});
  };
  simul::run(main());
}

TEST(Gather, RangeGivesAVectorInInputOrderAndRunsConcurrently) {
  auto main = []() -> simul::task<void> {
    std::vector<simul::task<int>> tasks;
    for (int i = 0; i < 50; ++i) {
      tasks.push_back(after(std::chrono::milliseconds(20 - i % 20), i));
    }
    const auto start = std::chrono::steady_clock::now();
    auto results = co_await simul::gather(std::move(tasks));
    const auto took = std::chrono::steady_clock::now() - start;
    CO_ASSERT_EQ(results.size(), 50u);
    for (int i = 0; i < 50; ++i) {
      EXPECT_EQ(results[static_cast<std::size_t>(i)], i);
    }
    EXPECT_LT(took, 900ms); // concurrent, not 50 sleeps in a row (sanity bound)
    auto empty = co_await simul::gather(std::vector<simul::task<int>>{});
    EXPECT_TRUE(empty.empty());
  };
  simul::run(main());
}

TEST(Gather, FirstFailurePropagatesAndTheOthersKeepRunning) {
  auto main = []() -> simul::task<void> {
    simul::event go;
    auto gated = [](simul::event* e) -> simul::task<int> {
      co_await e->wait();
      co_return 7;
    };
    auto slow = simul::create_task(gated(&go));
    auto second = simul::create_task(fail_int_after(5ms, "second"));
    try {
      co_await simul::gather(fail_after(1ms, "first"), slow, second);
      ADD_FAILURE() << "gather should throw";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "first");
    }
    EXPECT_FALSE(slow.done()); // not cancelled by the failure
    go.set();
    EXPECT_EQ(co_await slow, 7);
    while (!second.done()) {
      co_await simul::yield_now(); // "second" fails with nobody looking: not reported
    }
  };
  simul::event_loop loop;
  int reports = 0;
  loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context&) { ++reports; });
  loop.run_until_complete(main());
  loop.close();
  EXPECT_EQ(reports, 0);
}

TEST(Gather, ReturnExceptionsGivesAnOutcomePerChild) {
  auto main = []() -> simul::task<void> {
    auto [a, b] = co_await simul::gather(simul::return_exceptions, after(2ms, 3), fail_int_after(1ms, "bad"));
    CO_ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a.value(), 3);
    CO_ASSERT_FALSE(b.has_value());
    EXPECT_THROW(b.value(), std::runtime_error);
    std::vector<simul::task<int>> tasks;
    tasks.push_back(after(1ms, 1));
    tasks.push_back(fail_int_after(1ms, "x"));
    auto outcomes = co_await simul::gather(simul::return_exceptions, std::move(tasks));
    EXPECT_TRUE(outcomes[0]);
    EXPECT_FALSE(outcomes[1]);
  };
  simul::run(main());
}

TEST(Gather, CancellingTheAwaitingTaskCancelsEveryChild) {
  auto main = []() -> simul::task<void> {
    auto a = simul::create_task(sleep_forever());
    auto b = simul::create_task(sleep_forever());
    auto gatherer = [](simul::task_handle<void> x, simul::task_handle<void> y) -> simul::task<void> {
      co_await simul::gather(x, y);
    };
    auto g = simul::create_task(gatherer(a, b));
    co_await simul::sleep(1ms);
    g.cancel();
    EXPECT_THROW(co_await g, simul::cancelled_error);
    EXPECT_TRUE(a.cancelled());
    EXPECT_TRUE(b.cancelled());
  };
  simul::run(main());
}

TEST(Gather, AChildCancelledOnItsOwnMakesGatherThrowCancelled) {
  auto main = []() -> simul::task<void> {
    auto a = simul::create_task(sleep_forever());
    auto b = simul::create_task(after(5ms, 1));
    simul::get_running_loop().call_later(1ms, [a]() mutable { a.cancel(); });
    EXPECT_THROW(co_await simul::gather(a, b), simul::cancelled_error);
    EXPECT_FALSE(b.cancelled());
    co_await b;
  };
  simul::run(main());
}

TEST(Gather, TheSameTaskTwiceAndTwoGathersOnTheSameTasksAllComplete) {
  // A task's embedded done link serves the first waiter; the second gather
  // and a repeated child fall back to an array of links.
  auto main = []() -> simul::task<void> {
    auto a = simul::create_task(after(2ms, 1));
    auto b = simul::create_task(after(1ms, 2));
    auto first = simul::create_task([](simul::task_handle<int> x, simul::task_handle<int> y) -> simul::task<int> {
      auto t = co_await simul::gather(x, y, x);
      co_return std::get<0>(t) + std::get<1>(t) + std::get<2>(t);
    }(a, b));
    std::vector<simul::task_handle<int>> hs;
    hs.push_back(b);
    hs.push_back(a);
    hs.push_back(b);
    auto second = co_await simul::gather(std::move(hs));
    EXPECT_EQ(second.size(), 3u);
    EXPECT_EQ(second.at(0) * 100 + second.at(1) * 10 + second.at(2), 212);
    EXPECT_EQ(co_await first, 4);
    // After both gathers, the embedded links are free again and work once more.
    auto third = co_await simul::gather(a, b);
    EXPECT_EQ(std::get<0>(third) + std::get<1>(third), 3);
  };
  simul::run(main());
}

TEST(Gather, AGatherAbandonedMidWayLeavesNoLinkBehind) {
  auto main = []() -> simul::task<void> {
    auto slow = simul::create_task(after(20ms, 1));
    auto failing = simul::create_task(fail_int_after(1ms, "early"));
    EXPECT_THROW(co_await simul::gather(slow, failing), std::runtime_error);
    // The gather is gone while `slow` still runs: its embedded link must have
    // been unlinked, and a new waiter can use it.
    auto t = co_await simul::gather(slow);
    EXPECT_EQ(std::get<0>(t), 1);
  };
  simul::run(main());
}

TEST(Wait, FirstCompletedReturnsDoneAndPendingWithoutCancelling) {
  auto main = []() -> simul::task<void> {
    simul::event go;
    auto gated = [](simul::event* e) -> simul::task<int> {
      co_await e->wait();
      co_return 1;
    };
    std::vector<simul::task_handle<int>> tasks;
    tasks.push_back(simul::create_task(gated(&go)));
    tasks.push_back(simul::create_task(after(1ms, 2)));
    auto r = co_await simul::wait(tasks, simul::return_when::first_completed);
    CO_ASSERT_EQ(r.done.size(), 1u);
    EXPECT_EQ(r.done[0]->result(), 2);
    CO_ASSERT_EQ(r.not_done.size(), 1u);
    EXPECT_FALSE(r.not_done[0]->cancelled());
    go.set();
    auto all = co_await simul::wait(tasks);
    EXPECT_EQ(all.done.size(), 2u);
    std::vector<simul::task_handle<int>> none;
    EXPECT_THROW(co_await simul::wait(none), simul::error);
  };
  simul::run(main());
}

TEST(Wait, TimeoutReturnsWhatIsDoneAndNeverThrows) {
  auto main = []() -> simul::task<void> {
    std::vector<simul::task_handle<int>> tasks;
    tasks.push_back(simul::create_task(after(1ms, 1)));
    tasks.push_back(simul::create_task(after(1h, 2)));
    co_await tasks[0];
    auto r = co_await simul::wait(tasks, simul::return_when::all_completed, 20ms);
    EXPECT_EQ(r.done.size(), 1u);
    EXPECT_EQ(r.not_done.size(), 1u);
    tasks[1].cancel();
  };
  simul::run(main());
}

TEST(Wait, FirstExceptionStopsAtTheFirstFailure) {
  auto main = []() -> simul::task<void> {
    std::vector<simul::task_handle<int>> tasks;
    tasks.push_back(simul::create_task(after(1000ms, 1)));
    tasks.push_back(simul::create_task(fail_int_after(2ms, "boom")));
    auto r = co_await simul::wait(tasks, simul::return_when::first_exception);
    CO_ASSERT_EQ(r.done.size(), 1u);
    EXPECT_THROW(r.done[0]->result(), std::runtime_error);
    tasks[0].cancel();
  };
  simul::run(main());
}

TEST(WaitFor, ReturnsTheResultBeforeTheDeadline) {
  auto main = []() -> simul::task<void> { EXPECT_EQ(co_await simul::wait_for(after(1ms, 4), 1s), 4); };
  simul::run(main());
}

TEST(WaitFor, CancelsTheTaskAtTheDeadlineWaitsForItAndThrowsTimeout) {
  auto main = []() -> simul::task<void> {
    bool unwound = false;
    auto slow = [&]() -> simul::task<int> {
      try {
        co_await simul::sleep(1h);
      } catch (const simul::cancelled_error&) {
        unwound = true;
        throw;
      }
      co_return 1;
    };
    auto h = simul::create_task(slow());
    EXPECT_THROW(co_await simul::wait_for(h, 5ms), simul::timeout_error);
    EXPECT_TRUE(unwound);
    EXPECT_TRUE(h.cancelled());
  };
  simul::run(main());
}

TEST(WaitFor, ACompletionRacingTheDeadlineIsNeverLost) {
  // The task is due to finish in the same iteration as the deadline. Either
  // outcome is allowed, but a timeout means the task really was cancelled
  // (its result never existed), and a finished task's result always arrives.
  auto main = []() -> simul::task<void> {
    int results = 0;
    int timeouts = 0;
    for (int i = 0; i < 50; ++i) {
      auto inner = simul::create_task(after(2ms, 9));
      try {
        EXPECT_EQ(co_await simul::wait_for(inner, 2ms), 9);
        ++results;
      } catch (const simul::timeout_error&) {
        EXPECT_TRUE(inner.cancelled());
        ++timeouts;
      }
      EXPECT_TRUE(inner.done());
    }
    EXPECT_EQ(results + timeouts, 50);
  };
  simul::run(main());
}

TEST(WaitFor, OutsideCancellationIsNeverTurnedIntoATimeoutOrLost) {
  auto main = []() -> simul::task<void> {
    auto inner = simul::create_task(after(1h, 1));
    auto waiter = [](simul::task_handle<int> in) -> simul::task<int> { co_return co_await simul::wait_for(in, 5ms); };
    auto w = simul::create_task(waiter(inner));
    co_await simul::yield_now();
    co_await simul::yield_now();
    // Cancel the waiting task just as the deadline is due.
    co_await simul::sleep(5ms);
    w.cancel();
    EXPECT_THROW(co_await w, simul::cancelled_error);
    EXPECT_TRUE(w.cancelled());
    EXPECT_TRUE(inner.cancelled());
  };
  simul::run(main());
}

TEST(WaitFor, OutsideCancellationWhenTheTaskAlreadyFinishedIsStillDelivered) {
  auto main = []() -> simul::task<void> {
    auto inner = simul::create_task(after(1ms, 1));
    auto waiter = [](simul::task_handle<int> in) -> simul::task<int> { co_return co_await simul::wait_for(in, 1s); };
    auto w = simul::create_task(waiter(inner));
    co_await inner; // inner done; w's wake-up is queued
    w.cancel();     // cannot reach inner any more: must still reach w
    EXPECT_THROW(co_await w, simul::cancelled_error);
  };
  simul::run(main());
}

TEST(AsCompleted, YieldsResultsInCompletionOrder) {
  auto main = []() -> simul::task<std::vector<int>> {
    std::vector<simul::task<int>> tasks;
    tasks.push_back(after(15ms, 3));
    tasks.push_back(after(1ms, 1));
    tasks.push_back(after(8ms, 2));
    std::vector<int> order;
    for (auto next : simul::as_completed(std::move(tasks))) {
      order.push_back(co_await next);
    }
    co_return order;
  };
  EXPECT_EQ(simul::run(main()), (std::vector<int>{1, 2, 3}));
}

TEST(AsCompleted, TimeoutThrowsFromTheAwait) {
  auto main = []() -> simul::task<void> {
    std::vector<simul::task_handle<int>> hs{simul::create_task(after(1ms, 1)), simul::create_task(after(1h, 2))};
    co_await hs[0];
    auto ac = simul::as_completed(hs, 10ms);
    EXPECT_EQ(co_await ac.next(), 1);
    EXPECT_THROW(co_await ac.next(), simul::timeout_error);
    hs[1].cancel();
  };
  simul::run(main());
}

TEST(Shield, CancellingTheWaiterLeavesTheShieldedTaskRunning) {
  auto main = []() -> simul::task<void> {
    simul::event go;
    auto gated = [](simul::event* e) -> simul::task<int> {
      co_await e->wait();
      co_return 5;
    };
    auto inner = simul::create_task(gated(&go));
    auto waiter = [](simul::task_handle<int> in) -> simul::task<int> { co_return co_await simul::shield(in); };
    auto w = simul::create_task(waiter(inner));
    co_await simul::sleep(1ms);
    w.cancel();
    EXPECT_THROW(co_await w, simul::cancelled_error);
    EXPECT_FALSE(inner.done());
    go.set();
    EXPECT_EQ(co_await inner, 5);
  };
  simul::run(main());
}

TEST(Timeout, BodyFinishingInTimeReturnsItsValue) {
  auto main = []() -> simul::task<void> { EXPECT_EQ(co_await simul::timeout(1s)(after(1ms, 8)), 8); };
  simul::run(main());
}

TEST(Timeout, ExpiryCancelsTheBodyAndRaisesTimeoutError) {
  auto main = []() -> simul::task<void> {
    bool unwound = false;
    auto body = [&]() -> simul::task<void> {
      try {
        co_await simul::sleep(1h);
      } catch (const simul::cancelled_error&) {
        unwound = true;
        throw;
      }
    };
    auto cm = simul::timeout(5ms);
    EXPECT_THROW(co_await cm(body()), simul::timeout_error);
    EXPECT_TRUE(unwound);
    EXPECT_TRUE(cm.expired());
    EXPECT_EQ(simul::current_task().cancelling(), 0); // the scope took its request back
    co_await simul::sleep(1ms);                       // no cancellation left pending
  };
  simul::run(main());
}

TEST(Timeout, CanBeRescheduledFromInsideTheBody) {
  auto main = []() -> simul::task<void> {
    simul::timeout_scope cm = simul::timeout_at(std::nullopt);
    auto body = [](simul::timeout_scope& scope) -> simul::task<int> {
      scope.reschedule(std::chrono::steady_clock::now() + 5ms);
      co_await simul::sleep(1h);
      co_return 1;
    };
    EXPECT_THROW(co_await cm(body(cm)), simul::timeout_error);
    EXPECT_THROW(cm.reschedule(std::nullopt), simul::error);

    simul::timeout_scope later = simul::timeout(2ms);
    auto extend = [](simul::timeout_scope& scope) -> simul::task<int> {
      scope.reschedule(std::chrono::steady_clock::now() + 1h);
      co_await simul::sleep(10ms);
      co_return 2;
    };
    EXPECT_EQ(co_await later(extend(later)), 2);
    EXPECT_FALSE(later.expired());
  };
  simul::run(main());
}

TEST(Timeout, OutsideCancellationPropagatesAsCancelledNotTimeout) {
  auto main = []() -> simul::task<void> {
    auto body = []() -> simul::task<void> {
      auto cm = simul::timeout(5ms);
      co_await cm(sleep_forever());
    };
    auto t = simul::create_task(body());
    // Cancel from outside in the same iteration as the deadline.
    simul::get_running_loop().call_later(5ms, [t]() mutable { t.cancel(); });
    try {
      co_await t;
    } catch (const simul::cancelled_error&) {
    } catch (const simul::timeout_error&) {
      ADD_FAILURE() << "an outside cancellation must not become timeout_error";
    }
    EXPECT_TRUE(t.cancelled());
  };
  simul::run(main());
}
