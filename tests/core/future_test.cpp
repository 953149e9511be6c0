#include <simul/core/future.hpp>

#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

template <class T>
simul::future_errc code_of(T&& action) {
  try {
    action();
  } catch (const simul::future_error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no future_error was thrown";
  return simul::future_errc::no_state;
}

/// This thread's sched_yield calls (counted by the wrapper below).
thread_local int t_yields = 0;

} // namespace

// This binary's sched_yield: the system call, counted per thread, so a test
// can see whether a waiter spun.
extern "C" int sched_yield() noexcept {
  ++t_yields;
  return static_cast<int>(::syscall(SYS_sched_yield));
}

TEST(Future, DeliversValueFromAnotherThread) {
  simul::promise<int> p;
  auto f = p.get_future();
  std::thread producer([&p] { p.set_value(42); });
  EXPECT_EQ(f.get(), 42);
  producer.join();
}

TEST(Future, VoidFutureCompletes) {
  simul::promise<void> p;
  auto f = p.get_future();
  EXPECT_FALSE(f.ready());
  p.set_value();
  EXPECT_TRUE(f.ready());
  EXPECT_NO_THROW(f.get());
}

TEST(Future, CarriesMoveOnlyValues) {
  simul::promise<std::unique_ptr<int>> p;
  auto f = p.get_future();
  p.set_value(std::make_unique<int>(7));
  auto value = f.get();
  ASSERT_NE(value, nullptr);
  EXPECT_EQ(*value, 7);
}

TEST(Future, SetValueTakesABracedList) {
  simul::promise<std::pair<int, std::string>> p;
  auto f = p.get_future();
  p.set_value({1, "one"});
  EXPECT_EQ(f.get(), std::make_pair(1, std::string("one")));
  // Values of other types are still built in place from what is given.
  simul::promise<std::string> q;
  auto g = q.get_future();
  q.set_value(3, 'x');
  EXPECT_EQ(g.get(), "xxx");
}

TEST(Future, RethrowsTheProducersException) {
  simul::promise<int> p;
  auto f = p.get_future();
  p.set_exception(std::make_exception_ptr(std::out_of_range("index 9")));
  EXPECT_NE(f.exception(), nullptr);
  EXPECT_THROW(f.get(), std::out_of_range);
}

TEST(Future, SecondGetIsAClearError) {
  simul::promise<std::string> p;
  auto f = p.get_future();
  p.set_value("once");
  EXPECT_EQ(f.get(), "once");
  EXPECT_EQ(code_of([&] { (void)f.get(); }), simul::future_errc::value_already_retrieved);
}

TEST(Future, SecondGetOfACancelledFutureIsAClearError) {
  simul::promise<int> p;
  auto f = p.get_future();
  EXPECT_TRUE(f.cancel());
  EXPECT_THROW(f.get(), simul::cancelled_error);
  EXPECT_EQ(code_of([&] { (void)f.get(); }), simul::future_errc::value_already_retrieved);
}

TEST(Future, AStateWhoseWaitersSleepIsWaitedOnWithoutSpinning) {
  // The sched_yield calls of one waiter that blocks in get() well before the value comes.
  const auto yields_while_waiting = [](bool sleeps) {
    simul::promise<int> p;
    auto f = p.get_future();
    if (sleeps) {
      simul::detail::future_access::state(f).set_waiters_sleep();
    }
    EXPECT_EQ(simul::detail::future_access::state(f).waiters_sleep(), sleeps);
    std::atomic<bool> waiting{false};
    int yields = -1;
    int value = 0;
    std::thread waiter([&] {
      t_yields = 0;
      waiting = true;
      value = f.get();
      yields = t_yields;
    });
    while (!waiting) {
      std::this_thread::sleep_for(1ms);
    }
    std::this_thread::sleep_for(5ms); // well past the 50 µs a waiter may spin
    p.set_value(7);
    waiter.join();
    EXPECT_EQ(value, 7);
    return yields;
  };
  EXPECT_EQ(yields_while_waiting(true), 0) << "the waiter spun";
  // The control: a plain waiter spins (yielding) before it sleeps. A waiter
  // descheduled for the whole 50 µs window yields no times at all, which a
  // loaded machine does now and then, so the control needs one waiter in
  // twenty that yields.
  int spun = 0;
  for (int attempt = 0; attempt < 20 && spun == 0; ++attempt) {
    spun = yields_while_waiting(false);
  }
  EXPECT_GT(spun, 0) << "no plain waiter yielded in 20 tries";
}

// The "taken" flag lives in the status word, so that a future of a word-sized
// value costs one 64-byte malloc chunk (56 bytes and malloc's 8-byte header).
TEST(Future, AWordSizedStateFitsOneCacheLineOfMalloc) {
  EXPECT_LE(sizeof(simul::detail::shared_state<long>), 56U);
  EXPECT_LE(sizeof(simul::detail::shared_state<void>), 56U);
}

TEST(Future, EmptyFutureIsAClearError) {
  simul::future<int> f;
  EXPECT_FALSE(f.valid());
  EXPECT_EQ(code_of([&] { (void)f.get(); }), simul::future_errc::no_state);
  EXPECT_EQ(code_of([&] { f.wait(); }), simul::future_errc::no_state);
  EXPECT_EQ(code_of([&] { (void)f.ready(); }), simul::future_errc::no_state);
  EXPECT_EQ(code_of([&] { (void)f.cancel(); }), simul::future_errc::no_state);
}

TEST(Future, MovedFromFutureIsEmpty) {
  simul::promise<int> p;
  auto f = p.get_future();
  auto g = std::move(f);
  EXPECT_FALSE(f.valid()); // NOLINT(bugprone-use-after-move): checking the moved-from state is the point
  EXPECT_TRUE(g.valid());
  p.set_value(1);
  EXPECT_EQ(g.get(), 1);
}

TEST(Promise, SettingTwiceIsAClearError) {
  simul::promise<int> p;
  auto f = p.get_future();
  p.set_value(1);
  EXPECT_EQ(code_of([&] { p.set_value(2); }), simul::future_errc::promise_already_satisfied);
  EXPECT_EQ(code_of([&] { p.set_exception(std::make_exception_ptr(std::runtime_error("x"))); }),
            simul::future_errc::promise_already_satisfied);
  EXPECT_EQ(f.get(), 1);
}

TEST(Promise, GetFutureTwiceIsAClearError) {
  simul::promise<int> p;
  auto f = p.get_future();
  EXPECT_EQ(code_of([&] { (void)p.get_future(); }), simul::future_errc::future_already_retrieved);
}

TEST(Promise, DestroyedWithoutResultBreaksTheFuture) {
  simul::future<int> f;
  {
    simul::promise<int> p;
    f = p.get_future();
  }
  ASSERT_TRUE(f.ready());
  EXPECT_EQ(code_of([&] { (void)f.get(); }), simul::future_errc::broken_promise);
}

TEST(Promise, MoveAssignOverPendingPromiseBreaksItsFuture) {
  simul::promise<int> first;
  auto f = first.get_future();
  first = simul::promise<int>();
  EXPECT_EQ(code_of([&] { (void)f.get(); }), simul::future_errc::broken_promise);
}

TEST(Promise, NullExceptionIsRejected) {
  simul::promise<int> p;
  auto f = p.get_future();
  EXPECT_THROW(p.set_exception(nullptr), simul::error);
  EXPECT_FALSE(f.ready());
  p.set_value(3);
  EXPECT_EQ(f.get(), 3);
}

TEST(Promise, ExceptionFromValueConstructorBecomesTheResult) {
  struct throws_on_copy {
    throws_on_copy() = default;
    throws_on_copy(const throws_on_copy&) { throw std::runtime_error("copy failed"); }
  };
  simul::promise<throws_on_copy> p;
  auto f = p.get_future();
  const throws_on_copy source;
  p.set_value(source);
  EXPECT_THROW(f.get(), std::runtime_error);
}

TEST(Future, WaitForTimesOutThenSucceeds) {
  simul::promise<int> p;
  auto f = p.get_future();
  EXPECT_FALSE(f.wait_for(5ms));
  EXPECT_FALSE(f.wait_until(std::chrono::steady_clock::now() + 1ms));
  EXPECT_FALSE(f.wait_for(-1s));
  std::thread producer([&p] {
    std::this_thread::sleep_for(10ms);
    p.set_value(5);
  });
  EXPECT_TRUE(f.wait_for(10s));
  EXPECT_EQ(f.get(), 5);
  producer.join();
}

TEST(Future, WaitForHugeTimeoutDoesNotOverflow) {
  auto f = simul::make_ready_future(1);
  EXPECT_TRUE(f.wait_for(std::chrono::hours::max()));
}

TEST(Future, CancelBeforeStartMeansItNeverRuns) {
  simul::promise<int> p;
  auto f = p.get_future();
  EXPECT_TRUE(f.cancel());
  EXPECT_TRUE(f.ready());
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(p.cancelled());
  EXPECT_FALSE(p.set_running_or_notify_cancel());
  // The producer's late result is dropped, not an error.
  EXPECT_NO_THROW(p.set_value(1));
  EXPECT_THROW(f.get(), simul::cancelled_error);
}

TEST(Future, CancelOfRunningWorkWithoutHookFails) {
  simul::promise<int> p;
  auto f = p.get_future();
  ASSERT_TRUE(p.set_running_or_notify_cancel());
  EXPECT_FALSE(f.cancel());
  EXPECT_FALSE(f.cancelled());
  p.set_value(9);
  EXPECT_EQ(f.get(), 9);
}

TEST(Future, CancelReachesRunningWorkThroughHook) {
  simul::promise<int> p;
  auto f = p.get_future();
  std::atomic<bool> stop{false};
  p.set_cancel_hook([&stop] {
    stop = true;
    return true;
  });
  ASSERT_TRUE(p.set_running_or_notify_cancel());
  std::thread worker([&] {
    while (!stop) {
      std::this_thread::yield();
    }
    p.set_cancelled("stopped by hook");
  });
  EXPECT_TRUE(f.cancel());
  worker.join();
  EXPECT_TRUE(f.cancelled());
  try {
    (void)f.get();
    FAIL() << "get() should throw";
  } catch (const simul::cancelled_error& e) {
    EXPECT_STREQ(e.what(), "stopped by hook");
  }
}

TEST(Promise, SecondCancelHookIsRejected) {
  simul::promise<int> p;
  p.set_cancel_hook([] { return false; });
  EXPECT_THROW(p.set_cancel_hook([] { return true; }), simul::error);
}

TEST(Future, CancelAfterCompletionFails) {
  auto f = simul::make_ready_future(std::string("done"));
  EXPECT_FALSE(f.cancel());
  EXPECT_FALSE(f.cancelled());
  EXPECT_EQ(f.get(), "done");
}

TEST(Future, ExceptionIsNullOnSuccessAndDoesNotTakeTheValue) {
  auto f = simul::make_ready_future(4);
  EXPECT_EQ(f.exception(), nullptr);
  EXPECT_EQ(f.get(), 4);
}

TEST(Future, OnReadyRunsLaterOnCompletingThreadInOrder) {
  simul::promise<int> p;
  auto f = p.get_future();
  std::vector<int> order;
  std::thread::id ran_on;
  f.on_ready([&] { order.push_back(1); });
  f.on_ready([&] {
    order.push_back(2);
    ran_on = std::this_thread::get_id();
  });
  EXPECT_TRUE(order.empty());
  std::thread producer([&p] { p.set_value(1); });
  const auto producer_id = producer.get_id();
  producer.join();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(ran_on, producer_id);
  EXPECT_EQ(f.get(), 1); // still valid after on_ready
}

TEST(Future, OnReadyRunsAtOnceWhenReady) {
  auto f = simul::make_ready_future(1);
  bool ran = false;
  f.on_ready([&] { ran = true; });
  EXPECT_TRUE(ran);
}

TEST(Future, OnReadyCallbackMayOutliveTheFuture) {
  simul::promise<int> p;
  auto ran = std::make_shared<std::atomic<int>>(0);
  {
    auto f = p.get_future();
    f.on_ready([ran] { ++*ran; });
  }
  p.set_value(1);
  EXPECT_EQ(*ran, 1);
}

TEST(Future, ThenChainsValues) {
  simul::promise<int> p;
  auto f = p.get_future().then([](int v) { return v * 2; }).then([](int v) { return std::to_string(v); });
  p.set_value(21);
  EXPECT_EQ(f.get(), "42");
}

TEST(Future, ThenConsumesTheSource) {
  simul::promise<int> p;
  auto source = p.get_future();
  auto next = source.then([](int v) { return v; });
  EXPECT_FALSE(source.valid());
  p.set_value(1);
  EXPECT_EQ(next.get(), 1);
}

TEST(Future, ThenOnVoidAndToVoid) {
  simul::promise<void> p;
  int seen = 0;
  auto f = p.get_future().then([] { return 5; }).then([&seen](int v) { seen = v; });
  p.set_value();
  f.get();
  EXPECT_EQ(seen, 5);
}

TEST(Future, ThenPassesExceptionsThroughWithoutCalling) {
  simul::promise<int> p;
  bool called = false;
  auto f = p.get_future().then([&called](int v) {
    called = true;
    return v;
  });
  p.set_exception(std::make_exception_ptr(std::logic_error("bad")));
  EXPECT_THROW(f.get(), std::logic_error);
  EXPECT_FALSE(called);
}

TEST(Future, ThenTakingFutureSeesEveryOutcome) {
  simul::promise<int> p;
  auto f = p.get_future().then([](simul::future<int> ready) {
    try {
      return ready.get();
    } catch (const std::exception&) {
      return -1;
    }
  });
  p.set_exception(std::make_exception_ptr(std::runtime_error("boom")));
  EXPECT_EQ(f.get(), -1);
}

TEST(Future, ThenPropagatesCancellation) {
  simul::promise<int> p;
  auto source = p.get_future();
  EXPECT_TRUE(source.cancel());
  auto next = source.then([](int v) { return v; });
  EXPECT_TRUE(next.cancelled());
  EXPECT_THROW(next.get(), simul::cancelled_error);
}

TEST(Future, CancellingContinuationSkipsIt) {
  simul::promise<int> p;
  bool called = false;
  auto next = p.get_future().then([&called](int) { called = true; });
  EXPECT_TRUE(next.cancel());
  p.set_value(1);
  EXPECT_FALSE(called);
  EXPECT_THROW(next.get(), simul::cancelled_error);
}

TEST(Future, CancellingAContinuationCancelsTheWorkItChainsFrom) {
  simul::promise<int> p;
  auto next = p.get_future().then([](int v) { return v + 1; }).then([](int v) { return v * 2; });
  EXPECT_TRUE(next.cancel());
  // The request went up the whole chain: the producer learns not to start.
  EXPECT_FALSE(p.set_running_or_notify_cancel());
}

TEST(Future, CancellingAContinuationOfRunningWorkSkipsTheContinuationOnly) {
  simul::promise<int> p;
  ASSERT_TRUE(p.set_running_or_notify_cancel()); // the work has started: it cannot be stopped
  bool called = false;
  auto next = p.get_future().then([&called](int v) {
    called = true;
    return v;
  });
  EXPECT_TRUE(next.cancel());
  p.set_value(1); // the work still completes its own future
  EXPECT_FALSE(called);
  EXPECT_TRUE(next.cancelled());
}

TEST(Future, ThenExceptionBecomesTheResult) {
  auto f = simul::make_ready_future(1).then([](int) -> int { throw std::domain_error("no"); });
  EXPECT_THROW(f.get(), std::domain_error);
}

TEST(Future, MakeExceptionalFuture) {
  auto f = simul::make_exceptional_future<int>(std::make_exception_ptr(simul::timeout_error()));
  EXPECT_TRUE(f.ready());
  EXPECT_THROW(f.get(), simul::timeout_error);
}

namespace {
struct counting_waiter final : simul::cooperative_waiter {
  std::vector<simul::promise<int>>* work = nullptr;
  int ran = 0;
  bool run_one() override {
    if (work->empty()) {
      return false;
    }
    auto p = std::move(work->back());
    work->pop_back();
    p.set_value(++ran);
    return true;
  }
};
} // namespace

TEST(Future, WaitRunsOtherWorkThroughCooperativeWaiter) {
  std::vector<simul::promise<int>> work(3);
  auto last = work.front().get_future(); // completed last, by the waiter itself
  counting_waiter waiter;
  waiter.work = &work;
  {
    simul::scoped_cooperative_waiter scope(&waiter);
    EXPECT_EQ(last.get(), 3);
  }
  EXPECT_EQ(waiter.ran, 3);
  EXPECT_EQ(simul::detail::t_cooperative_waiter, nullptr);
}

TEST(Future, CooperativeWaitStillSleepsWhenThereIsNoWork) {
  std::vector<simul::promise<int>> none;
  counting_waiter waiter;
  waiter.work = &none;
  simul::promise<int> p;
  auto f = p.get_future();
  std::thread producer([&p] {
    std::this_thread::sleep_for(20ms);
    p.set_value(8);
  });
  {
    simul::scoped_cooperative_waiter scope(&waiter);
    EXPECT_FALSE(f.wait_for(1ms));
    EXPECT_EQ(f.get(), 8);
  }
  producer.join();
}
