// lock, event, condition, semaphore, bounded_semaphore, barrier, queues.

#include <simul/loop.hpp>

#include "co_assert.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;

TEST(Lock, SerialisesTasksInArrivalOrder) {
  auto main = []() -> simul::task<std::string> {
    simul::lock l;
    std::string trace;
    auto worker = [&](char c) -> simul::task<void> {
      auto g = co_await l.scoped();
      trace += c;
      co_await simul::sleep(1ms);
      trace += c;
    };
    co_await simul::gather(worker('a'), worker('b'), worker('c'));
    EXPECT_FALSE(l.locked());
    EXPECT_THROW(l.release(), simul::error);
    co_return trace;
  };
  EXPECT_EQ(simul::run(main()), "aabbcc");
}

TEST(Lock, AWaiterCancelledAfterBeingHandedTheLockPassesItOn) {
  auto main = []() -> simul::task<void> {
    simul::lock l;
    co_await l.acquire();
    bool second_got_it = false;
    auto first = [&]() -> simul::task<void> {
      co_await l.acquire();
      l.release();
    };
    auto second = [&]() -> simul::task<void> {
      co_await l.acquire();
      second_got_it = true;
      l.release();
    };
    auto a = simul::create_task(first());
    auto b = simul::create_task(second());
    co_await simul::yield_now(); // both wait
    l.release();                 // handed to a; a's wake-up is queued
    a.cancel();                  // too late to refuse: a must hand it on
    EXPECT_THROW(co_await a, simul::cancelled_error);
    co_await b;
    EXPECT_TRUE(second_got_it);
    EXPECT_FALSE(l.locked());
  };
  simul::run(main());
}

TEST(Event, WakesEveryWaiterAndStaysSetUntilCleared) {
  auto main = []() -> simul::task<void> {
    simul::event e;
    int woken = 0;
    auto waiter = [&]() -> simul::task<void> {
      co_await e.wait();
      ++woken;
    };
    auto a = simul::create_task(waiter());
    auto b = simul::create_task(waiter());
    co_await simul::yield_now();
    EXPECT_EQ(woken, 0);
    e.set();
    co_await a;
    co_await b;
    EXPECT_EQ(woken, 2);
    co_await e.wait(); // set: no wait
    e.clear();
    EXPECT_FALSE(e.is_set());
    auto c = simul::create_task(waiter());
    co_await simul::sleep(1ms);
    EXPECT_FALSE(c.done());
    c.cancel();
    EXPECT_THROW(co_await c, simul::cancelled_error);
  };
  simul::run(main());
}

TEST(Condition, NotifyWakesWaitersWhichRetakeTheLock) {
  auto main = []() -> simul::task<void> {
    simul::condition cv;
    std::vector<int> items;
    int consumed = 0;
    auto consumer = [&]() -> simul::task<void> {
      co_await cv.acquire();
      co_await cv.wait_for([&] { return !items.empty(); });
      EXPECT_TRUE(cv.locked());
      items.pop_back();
      ++consumed;
      cv.release();
    };
    auto a = simul::create_task(consumer());
    auto b = simul::create_task(consumer());
    co_await simul::yield_now();
    co_await cv.acquire();
    items = {1, 2};
    cv.notify_all();
    cv.release();
    co_await a;
    co_await b;
    EXPECT_EQ(consumed, 2);
    EXPECT_THROW(cv.notify(), simul::error); // lock not held
    EXPECT_THROW(co_await cv.wait(), simul::error);
  };
  simul::run(main());
}

TEST(Semaphore, LimitsConcurrency) {
  auto main = []() -> simul::task<void> {
    simul::semaphore sem(2);
    int inside = 0;
    int peak = 0;
    auto worker = [&]() -> simul::task<void> {
      co_await sem.acquire();
      ++inside;
      peak = std::max(peak, inside);
      co_await simul::sleep(1ms);
      --inside;
      sem.release();
    };
    std::vector<simul::task<void>> ws;
    for (int i = 0; i < 6; ++i) {
      ws.push_back(worker());
    }
    co_await simul::gather(std::move(ws));
    EXPECT_EQ(peak, 2);
    EXPECT_EQ(sem.value(), 2);
    EXPECT_THROW(simul::semaphore(-1), simul::error);
  };
  simul::run(main());
}

TEST(Semaphore, BoundedSemaphoreReleasedTooOftenIsAClearError) {
  simul::bounded_semaphore sem(1);
  EXPECT_THROW(sem.release(), simul::error);
  EXPECT_TRUE(sem.try_acquire());
  sem.release();
  EXPECT_EQ(sem.value(), 1);
}

TEST(Barrier, ReleasesAllPartiesTogetherWithArrivalIndices) {
  auto main = []() -> simul::task<void> {
    simul::barrier b(3);
    std::vector<std::size_t> indices;
    auto party = [&]() -> simul::task<void> { indices.push_back(co_await b.wait()); };
    auto x = simul::create_task(party());
    auto y = simul::create_task(party());
    co_await simul::yield_now();
    EXPECT_EQ(b.n_waiting(), 2u);
    co_await party();
    co_await x;
    co_await y;
    std::sort(indices.begin(), indices.end());
    EXPECT_EQ(indices, (std::vector<std::size_t>{0, 1, 2}));
    auto z = simul::create_task(party());
    co_await simul::yield_now();
    b.abort();
    EXPECT_THROW(co_await z, simul::broken_barrier_error);
    EXPECT_THROW(co_await b.wait(), simul::broken_barrier_error);
    b.reset();
    EXPECT_FALSE(b.broken());
  };
  simul::run(main());
}

TEST(Queue, ProducerConsumerWithMaxsizeAndJoin) {
  auto main = []() -> simul::task<void> {
    simul::queue<int> q(2);
    std::vector<int> got;
    auto producer = [&]() -> simul::task<void> {
      for (int i = 0; i < 10; ++i) {
        co_await q.put(i);
        EXPECT_LE(q.qsize(), 2u);
      }
    };
    auto consumer = [&]() -> simul::task<void> {
      while (true) {
        int v = co_await q.get();
        got.push_back(v);
        q.task_done();
      }
    };
    auto c = simul::create_task(consumer());
    co_await producer();
    co_await q.join();
    EXPECT_EQ(got.size(), 10u);
    for (int i = 0; i < 10; ++i) {
      EXPECT_EQ(got[static_cast<std::size_t>(i)], i);
    }
    c.cancel();
    EXPECT_THROW(co_await c, simul::cancelled_error);
    EXPECT_THROW(q.task_done(), simul::error);
  };
  simul::run(main());
}

TEST(Queue, NowaitFormsThrowQueueFullAndQueueEmpty) {
  simul::queue<int> q(1);
  EXPECT_THROW(q.get_nowait(), simul::queue_empty);
  q.put_nowait(1);
  EXPECT_TRUE(q.full());
  EXPECT_THROW(q.put_nowait(2), simul::queue_full);
  EXPECT_EQ(q.get_nowait(), 1);
}

TEST(Queue, PriorityAndLifoOrder) {
  simul::priority_queue<int> pq;
  for (int v : {5, 1, 4, 2, 3}) {
    pq.put_nowait(v);
  }
  std::vector<int> out;
  while (!pq.empty()) {
    out.push_back(pq.get_nowait());
  }
  EXPECT_EQ(out, (std::vector<int>{1, 2, 3, 4, 5}));
  simul::lifo_queue<std::string> lq;
  lq.put_nowait("a");
  lq.put_nowait("b");
  EXPECT_EQ(lq.get_nowait(), "b");
}

TEST(Queue, ShutdownWakesGettersAndRejectsPuts) {
  auto main = []() -> simul::task<void> {
    simul::queue<int> q;
    auto getter = simul::create_task(q.get());
    co_await simul::yield_now();
    q.put_nowait(7);
    EXPECT_EQ(co_await getter, 7);
    q.put_nowait(8);
    auto blocked = simul::create_task([](simul::queue<int>* qq) -> simul::task<void> {
      (void)co_await qq->get();
      (void)co_await qq->get(); // empty and shut down: throws
    }(&q));
    co_await simul::yield_now();
    q.shutdown();
    EXPECT_THROW(co_await blocked, simul::queue_shutdown);
    EXPECT_THROW(q.put_nowait(1), simul::queue_shutdown);
    EXPECT_THROW(co_await q.put(1), simul::queue_shutdown);

    simul::queue<int> r;
    r.put_nowait(1);
    r.put_nowait(2);
    r.shutdown(true); // drops the items and counts them done
    EXPECT_TRUE(r.empty());
    co_await r.join();
  };
  simul::run(main());
}

TEST(Queue, CancelledGetterAfterWakeUpPassesTheItemOn) {
  auto main = []() -> simul::task<void> {
    simul::queue<int> q;
    auto a = simul::create_task(q.get());
    auto b = simul::create_task(q.get());
    co_await simul::yield_now();
    q.put_nowait(1); // wakes a
    a.cancel();      // after the wake-up: b must get the item
    EXPECT_THROW(co_await a, simul::cancelled_error);
    EXPECT_EQ(co_await b, 1);
  };
  simul::run(main());
}
