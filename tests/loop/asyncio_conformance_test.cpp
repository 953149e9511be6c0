// Cases from CPython's own asyncio tests (Lib/test/test_asyncio), ported to
// simul: each test names the CPython test it mirrors. asyncio's behaviour is
// the contract.

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

simul::task<void> sleep_for(std::chrono::milliseconds d) { co_await simul::sleep(d); }
simul::task<std::string> done_value() { co_return "done"; }

} // namespace

// test_tasks.py: test_cancel_at_end. A task that cancels itself and returns
// without awaiting again ends cancelled, not with its value.
TEST(AsyncioConformance, TaskCancellingItselfThenReturningEndsCancelled) {
  auto main = []() -> simul::task<void> {
    auto task = []() -> simul::task<int> {
      simul::current_task().cancel();
      co_return 12;
    };
    auto t = simul::create_task(task());
    EXPECT_THROW(co_await t, simul::cancelled_error);
    EXPECT_TRUE(t.cancelled());
    EXPECT_TRUE(t.done());
    EXPECT_FALSE(t.cancel());
  };
  simul::run(main());
}

// test_tasks.py: test_cancel_awaited_task. A task with a pending cancellation
// that awaits another task passes the cancellation to it (and on to what that
// one waits on) and waits for it.
TEST(AsyncioConformance, PendingCancellationIsPassedToTheAwaitedTask) {
  auto main = []() -> simul::task<void> {
    simul::promise<void> p;
    auto fut = p.get_future();
    simul::task_handle<void> nested_task;
    auto nested = [&]() -> simul::task<void> { co_await fut; };
    auto coro = [&]() -> simul::task<void> {
      nested_task = simul::create_task(nested());
      co_await simul::yield_now();
      simul::current_task().cancel(); // not blocked: the request is pending
      co_await nested_task;
    };
    auto t = simul::create_task(coro());
    EXPECT_THROW(co_await t, simul::cancelled_error);
    EXPECT_TRUE(t.cancelled());
    EXPECT_TRUE(nested_task.cancelled());
    EXPECT_TRUE(fut.cancelled());
  };
  simul::run(main());
}

// test_tasks.py: test_uncancel_resets_must_cancel. A task whose future is
// ready (its wake-up queued) is cancelled and uncancelled: it goes on.
TEST(AsyncioConformance, UncancelWhileTheAwaitedFutureIsReadyTakesTheCancellationBack) {
  auto main = []() -> simul::task<void> {
    simul::promise<void> p;
    auto fut = p.get_future();
    auto coro = [&]() -> simul::task<int> {
      co_await fut;
      co_return 42;
    };
    auto t = simul::create_task(coro());
    co_await simul::yield_now(); // t waits on fut
    p.set_value();               // t is runnable
    EXPECT_TRUE(t.cancel());
    EXPECT_EQ(t.cancelling(), 1);
    EXPECT_EQ(t.uncancel(), 0);
    EXPECT_EQ(co_await t, 42);
  };
  simul::run(main());
}

// The same sequence on an event, which already behaved (kept as a reference).
TEST(AsyncioConformance, UncancelWhileTheAwaitedEventIsSetTakesTheCancellationBack) {
  auto main = []() -> simul::task<void> {
    simul::event ev;
    auto coro = [&]() -> simul::task<int> {
      co_await ev.wait();
      co_return 42;
    };
    auto t = simul::create_task(coro());
    co_await simul::yield_now();
    ev.set();
    EXPECT_TRUE(t.cancel());
    EXPECT_EQ(t.uncancel(), 0);
    EXPECT_EQ(co_await t, 42);
  };
  simul::run(main());
}

// test_tasks.py: test_cancel_gather_2. The message given to cancel() comes
// out of a gather(return_exceptions) the task was awaiting.
TEST(AsyncioConformance, CancelMessageComesOutOfAGather) {
  auto main = []() -> simul::task<void> {
    auto test = []() -> simul::task<void> {
      for (int i = 0; i < 1000; ++i) {
        (void)co_await simul::gather(simul::return_exceptions, sleep_for(5ms));
      }
    };
    auto qwe = simul::create_task(test());
    co_await simul::sleep(12ms);
    qwe.cancel("my message");
    try {
      co_await qwe;
      ADD_FAILURE() << "no cancelled_error";
    } catch (const simul::cancelled_error& e) {
      EXPECT_STREQ(e.what(), "my message");
    }
    // The plain gather too.
    auto plain = []() -> simul::task<void> { (void)co_await simul::gather(sleep_for(1h), sleep_for(1h)); };
    auto t2 = simul::create_task(plain());
    co_await simul::yield_now();
    t2.cancel("plain message");
    try {
      co_await t2;
      ADD_FAILURE() << "no cancelled_error";
    } catch (const simul::cancelled_error& e) {
      EXPECT_STREQ(e.what(), "plain message");
    }
  };
  simul::run(main());
}

// test_taskgroups.py: test_taskgroup_cancel_with_message (the cancellation of
// the owning task from outside keeps its message).
TEST(AsyncioConformance, CancelMessageComesOutOfATaskGroup) {
  auto main = []() -> simul::task<void> {
    auto owner = []() -> simul::task<void> {
      simul::task_group g;
      std::exception_ptr body_error;
      try {
        g.create_task(sleep_for(1h));
        co_await simul::sleep(1h);
      } catch (...) {
        body_error = std::current_exception();
      }
      co_await g.join(body_error);
    };
    auto t = simul::create_task(owner());
    co_await simul::yield_now();
    co_await simul::yield_now();
    t.cancel("outside message");
    try {
      co_await t;
      ADD_FAILURE() << "no cancelled_error";
    } catch (const simul::cancelled_error& e) {
      EXPECT_STREQ(e.what(), "outside message");
    }
    EXPECT_TRUE(t.cancelled());
  };
  simul::run(main());
}

// test_waitfor.py: test_wait_for_blocking; test_timeouts.py:
// test_timeout_disabled. No timeout means no deadline, not one in the past.
TEST(AsyncioConformance, NoTimeoutNeverExpires) {
  auto main = []() -> simul::task<void> {
    EXPECT_EQ(co_await simul::wait_for(done_value(), simul::no_timeout), "done");
    auto slow = []() -> simul::task<int> {
      co_await simul::sleep(2ms);
      co_return 7;
    };
    EXPECT_EQ(co_await simul::wait_for(slow(), simul::no_timeout), 7);
    EXPECT_EQ(co_await simul::timeout(simul::no_timeout)(slow()), 7);
    // The largest durations saturate too.
    EXPECT_EQ(co_await simul::wait_for(slow(), std::chrono::nanoseconds::max() - 1ns), 7);
    EXPECT_EQ(co_await simul::timeout(std::chrono::nanoseconds::max() - 1ns)(slow()), 7);
    auto sleeper = simul::create_task(sleep_for(std::chrono::milliseconds::max()));
    auto& loop = simul::current_task().base().loop();
    bool fired = false;
    auto h = loop.call_later(std::chrono::nanoseconds::max(), [&] { fired = true; });
    co_await simul::sleep(3ms);
    EXPECT_FALSE(sleeper.done());
    EXPECT_FALSE(fired);
    h.cancel();
    sleeper.cancel();
    EXPECT_THROW(co_await sleeper, simul::cancelled_error);
  };
  simul::run(main());
}

// test_locks.py: test_abort_barrier. abort() empties the barrier.
TEST(AsyncioConformance, BarrierAbortLeavesNobodyWaiting) {
  auto main = []() -> simul::task<void> {
    simul::barrier b(3);
    auto waiter = [&]() -> simul::task<void> { (void)co_await b.wait(); };
    auto t1 = simul::create_task(waiter());
    co_await simul::yield_now();
    EXPECT_EQ(b.n_waiting(), 1U);
    b.abort();
    EXPECT_EQ(b.n_waiting(), 0U);
    EXPECT_TRUE(b.broken());
    EXPECT_THROW(co_await t1, simul::broken_barrier_error);
  };
  simul::run(main());
}

// test_locks.py: test_abort_barrier_when_tasks_half_draining_half_blocking.
// Tasks released by a round but not yet resumed when abort() runs get
// broken_barrier_error (asyncio's draining state).
TEST(AsyncioConformance, BarrierAbortBreaksTasksStillDraining) {
  auto main = []() -> simul::task<void> {
    constexpr int n = 5;
    constexpr int blocking = n / 2;
    simul::barrier b(n);
    int results1 = 0;
    int results2 = 0;
    int count = 0;
    auto coro = [&]() -> simul::task<void> {
      try {
        (void)co_await b.wait();
      } catch (const simul::broken_barrier_error&) {
        ++results1; // waiting to drain
        co_return;
      }
      ++count;
      if (count > blocking) {
        b.abort();
      } else {
        try {
          (void)co_await b.wait();
        } catch (const simul::broken_barrier_error&) {
          ++results2; // blocked in the next round
        }
      }
    };
    std::vector<simul::task<void>> tasks;
    for (int i = 0; i < n; ++i) {
      tasks.push_back(coro());
    }
    (void)co_await simul::gather(std::move(tasks));
    EXPECT_TRUE(b.broken());
    EXPECT_EQ(results1, blocking);
    EXPECT_EQ(results2, n - blocking - 1);
    EXPECT_EQ(b.n_waiting(), 0U);
  };
  simul::run(main());
}

// test_tasks.py: test_wait_really_done. wait(first_completed) reports a task
// that finishes in the iteration the wait resumes in as done.
TEST(AsyncioConformance, WaitFirstCompletedSeesTasksThatFinishInTheSameIteration) {
  auto main = []() -> simul::task<void> {
    auto coro1 = []() -> simul::task<void> { co_await simul::yield_now(); };
    auto coro2 = []() -> simul::task<void> {
      co_await simul::yield_now();
      co_await simul::yield_now();
    };
    auto a = simul::create_task(coro1());
    auto b = simul::create_task(coro2());
    std::vector<simul::task_handle<void>> both{b, a};
    auto r = co_await simul::wait(both, simul::return_when::first_completed);
    EXPECT_EQ(r.done.size(), 2U);
    EXPECT_TRUE(r.not_done.empty());
  };
  simul::run(main());
}

// test_locks.py (SemaphoreTests): test_acquire_fifo_order_2. A task that
// releases and re-acquires at once does not run ahead of a waiter already woken.
TEST(AsyncioConformance, SemaphoreReacquireDoesNotOvertakeAWokenWaiter) {
  auto main = []() -> simul::task<void> {
    simul::semaphore sem(1);
    std::vector<int> result;
    auto c1 = [&]() -> simul::task<void> {
      co_await sem.acquire();
      result.push_back(1);
    };
    auto c2 = [&]() -> simul::task<void> {
      co_await sem.acquire();
      result.push_back(2);
      sem.release();
      co_await sem.acquire();
      result.push_back(4);
    };
    auto c3 = [&]() -> simul::task<void> {
      co_await sem.acquire();
      result.push_back(3);
    };
    auto t1 = simul::create_task(c1());
    auto t2 = simul::create_task(c2());
    auto t3 = simul::create_task(c3());
    co_await simul::yield_now();
    sem.release();
    sem.release();
    std::vector<simul::task_handle<void>> all{t1, t2, t3};
    (void)co_await simul::gather(std::move(all));
    EXPECT_EQ(result, (std::vector<int>{1, 2, 3, 4}));
  };
  simul::run(main());
}

// test_locks.py (LockTests): test_cancel_race. Once the holder released the
// lock, locked() is false even though it is promised to the next waiter, and
// a waiter cancelled in the same iteration passes it on.
TEST(AsyncioConformance, LockIsUnlockedWhileHandedToTheNextWaiter) {
  auto main = []() -> simul::task<void> {
    simul::lock lock;
    simul::event fa;
    std::vector<std::string> order;
    auto lockit = [&](std::string name, bool block) -> simul::task<void> {
      co_await lock.acquire();
      order.push_back(name);
      try {
        if (block) {
          co_await fa.wait();
        }
      } catch (...) {
        lock.release();
        throw;
      }
      lock.release();
    };
    auto ta = simul::create_task(lockit("A", true));
    co_await simul::yield_now();
    EXPECT_TRUE(lock.locked());
    auto tb = simul::create_task(lockit("B", false));
    co_await simul::yield_now();
    auto tc = simul::create_task(lockit("C", false));
    co_await simul::yield_now();
    fa.set();
    tb.cancel();
    co_await simul::yield_now(); // A releases; B is gone: C is promised the lock
    EXPECT_TRUE(ta.done());
    EXPECT_TRUE(tb.cancelled());
    EXPECT_FALSE(lock.locked());
    EXPECT_FALSE(lock.try_acquire()); // C goes first
    co_await tc;
    EXPECT_EQ(order, (std::vector<std::string>{"A", "C"}));
    EXPECT_FALSE(lock.locked());
    // Plain hand-over: locked() is false between release and the waiter's turn.
    co_await lock.acquire();
    auto td = simul::create_task(lockit("D", false));
    co_await simul::yield_now();
    lock.release();
    EXPECT_FALSE(lock.locked());
    EXPECT_THROW(lock.release(), simul::error); // nobody holds it
    co_await td;
    EXPECT_FALSE(lock.locked());
  };
  simul::run(main());
}

// test_tasks.py: test_wait_for_* / test_timeouts.py take any awaitable: a
// queue's get(), a lock's acquire() and a sleep, not only tasks.
TEST(AsyncioConformance, CombinatorsTakeAnyAwaitable) {
  auto main = []() -> simul::task<void> {
    simul::queue<int> q;
    EXPECT_THROW(co_await simul::wait_for(q.get(), 5ms), simul::timeout_error);
    q.put_nowait(5);
    EXPECT_EQ(co_await simul::wait_for(q.get(), 1s), 5);
    q.put_nowait(6);
    EXPECT_EQ(co_await simul::timeout(1s)(q.get()), 6);
    EXPECT_THROW(co_await simul::timeout(5ms)(q.get()), simul::timeout_error);
    q.put_nowait(7);
    auto [got, slept] = co_await simul::gather(q.get(), simul::sleep(1ms));
    EXPECT_EQ(got, 7);
    (void)slept;
    simul::lock l;
    co_await simul::shield(l.acquire());
    EXPECT_TRUE(l.locked());
    EXPECT_THROW(co_await simul::wait_for(l.acquire(), 2ms), simul::timeout_error);
    l.release();
    EXPECT_FALSE(l.locked());
    // A future: moved into the combinator's task, cancelled at the deadline.
    simul::promise<int> p;
    auto fut = p.get_future();
    EXPECT_THROW(co_await simul::wait_for(std::move(fut), 2ms), simul::timeout_error);
    EXPECT_FALSE(fut.valid()); // moved in
    EXPECT_TRUE(p.cancelled());
    simul::promise<int> p2;
    auto fut2 = p2.get_future();
    p2.set_value(9);
    EXPECT_EQ(co_await simul::wait_for(std::move(fut2), 1s), 9);
    // An event's wait, through gather and a named timeout scope.
    simul::event ev;
    auto setter = [&]() -> simul::task<void> {
      co_await simul::sleep(1ms);
      ev.set();
    };
    auto [a, b] = co_await simul::gather(ev.wait(), setter());
    (void)a;
    (void)b;
    EXPECT_TRUE(ev.is_set());
  };
  simul::run(main());
}

// test_futures.py: test_future_callback_raises (asyncio logs an exception
// from a done callback through the loop's exception handler and goes on).
TEST(AsyncioConformance, FutureCallbackThatThrowsGoesToTheLoopsExceptionHandler) {
  simul::event_loop loop;
  std::vector<std::string> reported;
  loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context& c) {
    std::string what;
    try {
      std::rethrow_exception(c.exception);
    } catch (const std::exception& e) {
      what = e.what();
    }
    reported.push_back(c.message + ": " + what);
  });
  auto main = [&]() -> simul::task<int> {
    simul::promise<int> p;
    auto f = p.get_future();
    int ran = 0;
    f.on_ready([] { throw std::runtime_error("callback failed"); });
    f.on_ready([&] { ++ran; });
    p.set_value(8); // on the loop's thread: the callbacks run here
    EXPECT_EQ(ran, 1);
    co_return co_await f;
  };
  EXPECT_EQ(loop.run_until_complete(main()), 8);
  loop.close();
  ASSERT_EQ(reported.size(), 1U);
  EXPECT_NE(reported[0].find("callback failed"), std::string::npos) << reported[0];
}
