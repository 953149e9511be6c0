#include <simul/threadpool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Blocks a worker until released, so the tasks behind it stay queued.
struct gate {
  std::atomic<bool> entered{false};
  std::atomic<bool> open{false};
  void pass() {
    entered = true;
    while (!open.load()) {
      std::this_thread::sleep_for(100us);
    }
  }
  void wait_entered() const {
    while (!entered.load()) {
      std::this_thread::sleep_for(100us);
    }
  }
};

} // namespace

TEST(ThreadPoolCancel, CancellingAQueuedTaskMeansItNeverRuns) {
  simul::thread_pool pool({.workers = 1});
  gate g;
  auto blocker = pool.submit([&g] { g.pass(); });
  g.wait_entered();
  std::atomic<bool> ran{false};
  auto victim = pool.submit([&ran] {
    ran = true;
    return 1;
  });
  EXPECT_TRUE(victim.cancel());
  EXPECT_TRUE(victim.ready());
  EXPECT_TRUE(victim.cancelled());
  EXPECT_THROW((void)victim.get(), simul::cancelled_error);
  // concurrent.futures' rule (test_future: test_cancel): cancelling a
  // cancelled future again still says it will never run.
  EXPECT_TRUE(victim.cancel()) << "a cancelled future stays cancelled";
  g.open = true;
  blocker.get();
  pool.wait_idle();
  EXPECT_FALSE(ran.load());
  auto s = pool.stats();
  EXPECT_EQ(s.cancelled, 1U);
  EXPECT_EQ(s.completed, 1U);
}

TEST(ThreadPoolCancel, CancellingAContinuationCancelsTheQueuedTaskItChainsFrom) {
  simul::thread_pool pool({.workers = 1});
  gate g;
  auto blocker = pool.submit([&g] { g.pass(); });
  g.wait_entered();
  std::atomic<bool> ran{false};
  auto chained = pool.submit([&ran] {
                       ran = true;
                       return 1;
                     })
                     .then([](int v) { return v + 1; });
  EXPECT_TRUE(chained.cancel());
  g.open = true;
  blocker.get();
  pool.wait_idle();
  EXPECT_FALSE(ran.load()) << "the queued task only fed a cancelled continuation";
  EXPECT_EQ(pool.stats().cancelled, 1U);
}

TEST(ThreadPoolCancel, CancellingARunningTaskReturnsFalseAndItFinishes) {
  simul::thread_pool pool({.workers = 1});
  gate g;
  auto running = pool.submit([&g] {
    g.pass();
    return 7;
  });
  g.wait_entered();
  EXPECT_FALSE(running.cancel());
  g.open = true;
  EXPECT_EQ(running.get(), 7);
}

TEST(ThreadPoolCancel, CancellingAFinishedTaskReturnsFalse) {
  simul::thread_pool pool({.workers = 1});
  auto f = pool.submit([] { return 3; });
  f.wait();
  EXPECT_FALSE(f.cancel());
  EXPECT_EQ(f.get(), 3);
}

TEST(ThreadPoolShutdown, SubmitAndPostAfterShutdownThrowBrokenExecutor) {
  simul::thread_pool pool({.workers = 2, .name = "closed"});
  EXPECT_FALSE(pool.is_shutdown());
  pool.shutdown();
  EXPECT_TRUE(pool.is_shutdown());
  try {
    (void)pool.submit([] { return 1; });
    ADD_FAILURE() << "no throw";
  } catch (const simul::broken_executor& e) {
    EXPECT_FALSE(e.cause());
    EXPECT_NE(std::string(e.what()).find("closed"), std::string::npos);
  }
  EXPECT_THROW(pool.post([] {}), simul::broken_executor);
  EXPECT_THROW(pool.parallel_for(0, 10, [](int) {}), simul::broken_executor);
  pool.shutdown(); // twice is fine
  pool.wait_idle();
}

TEST(ThreadPoolShutdown, ShutdownWaitsForQueuedWorkByDefault) {
  simul::thread_pool pool({.workers = 2});
  std::atomic<int> done{0};
  std::vector<simul::future<void>> futures;
  for (int i = 0; i < 200; ++i) {
    futures.push_back(pool.submit([&done] {
      std::this_thread::sleep_for(50us);
      done.fetch_add(1);
    }));
  }
  pool.shutdown();
  EXPECT_EQ(done.load(), 200);
  for (auto& f : futures) {
    EXPECT_TRUE(f.ready());
    EXPECT_NO_THROW(f.get());
  }
}

TEST(ThreadPoolShutdown, CancelPendingCancelsEverythingQueued) {
  simul::thread_pool pool({.workers = 1});
  gate g;
  auto blocker = pool.submit([&g] {
    g.pass();
    return 1;
  });
  g.wait_entered();
  std::atomic<int> ran{0};
  std::vector<simul::future<int>> queued;
  for (int i = 0; i < 20; ++i) {
    queued.push_back(pool.submit([&ran] { return ran.fetch_add(1); }));
  }
  pool.post([&ran] { ran.fetch_add(1); });
  pool.shutdown({.wait = false, .cancel_pending = true});
  for (auto& f : queued) {
    EXPECT_TRUE(f.ready());
    EXPECT_TRUE(f.cancelled());
    EXPECT_THROW((void)f.get(), simul::cancelled_error);
  }
  EXPECT_FALSE(blocker.ready()) << "the running task is not cancelled";
  g.open = true;
  EXPECT_EQ(blocker.get(), 1);
  pool.shutdown(); // now wait for the workers
  EXPECT_EQ(ran.load(), 0);
  auto s = pool.stats();
  EXPECT_EQ(s.cancelled, 21U);
  EXPECT_EQ(s.completed, 1U);
}

TEST(ThreadPoolShutdown, ShutdownWithoutWaitReturnsWhileWorkRuns) {
  simul::thread_pool pool({.workers = 1});
  gate g;
  auto f = pool.submit([&g] {
    g.pass();
    return 5;
  });
  g.wait_entered();
  pool.shutdown({.wait = false});
  EXPECT_FALSE(f.ready());
  g.open = true;
  EXPECT_EQ(f.get(), 5);
}

TEST(ThreadPoolShutdown, TasksCannotWaitForTheirOwnPool) {
  simul::thread_pool pool({.workers = 2});
  auto idle = pool.submit([&pool] { pool.wait_idle(); });
  EXPECT_THROW(idle.get(), simul::error);
  auto stop = pool.submit([&pool] { pool.shutdown({.wait = true}); });
  EXPECT_THROW(stop.get(), simul::error);
  EXPECT_FALSE(pool.is_shutdown());
  // Shutting down without waiting from a task is allowed.
  auto soft = pool.submit([&pool] { pool.shutdown({.wait = false}); });
  soft.get();
  EXPECT_TRUE(pool.is_shutdown());
}

TEST(ThreadPoolShutdown, NestedSubmitAfterShutdownFailsTheOuterTask) {
  simul::thread_pool pool({.workers = 1});
  gate g;
  auto outer = pool.submit([&] {
    g.pass();
    return pool.submit([] { return 1; }).get();
  });
  g.wait_entered();
  pool.shutdown({.wait = false});
  g.open = true;
  EXPECT_THROW((void)outer.get(), simul::broken_executor);
}

TEST(ThreadPoolShutdown, DestructorWaitsForEverything) {
  std::atomic<int> done{0};
  {
    simul::thread_pool pool({.workers = 2});
    for (int i = 0; i < 100; ++i) {
      pool.post([&done] {
        std::this_thread::sleep_for(20us);
        done.fetch_add(1);
      });
    }
  }
  EXPECT_EQ(done.load(), 100);
}

TEST(ThreadPoolShutdown, DestroyingAPoolThatNeverRanWorkIsQuick) {
  for (int i = 0; i < 20; ++i) {
    simul::thread_pool pool({.workers = 4});
  }
  SUCCEED();
}
