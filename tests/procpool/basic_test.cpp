// The happy paths and the plain error paths of process_pool: values go to a
// worker process and come back, exceptions arrive as remote_error, shutdown
// and submit-after-shutdown behave, and the pool is safe to create after the
// program has started threads.

#include <simul/procpool.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

int square(int x) { return x * x; }
double mix(int a, double b, char c) { return a * b + c; }
int my_pid() { return static_cast<int>(::getpid()); }
void nothing() {}
int thrower(int) { throw std::invalid_argument("no such thing"); }
int thread_count() {
  int n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    ++n;
  }
  return n;
}

struct point {
  int x;
  int y;
};
point flip(point p) { return {p.y, p.x}; }

} // namespace

TEST(ProcessPool, ModelsTheExecutorConcept) {
  static_assert(simul::executor<simul::process_pool>);
  SUCCEED();
}

TEST(ProcessPool, WorkersCountsThePoolsWorkersAndTheOldSpellingStillWorks) {
  simul::process_pool procs({.workers = 3});
  EXPECT_EQ(procs.workers(), 3U);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  EXPECT_EQ(procs.worker_count(), 3U); // deprecated: use workers()
#pragma GCC diagnostic pop
}

TEST(ProcessPool, RunsAPlainFunctionInAnotherProcess) {
  simul::process_pool procs({.workers = 2});
  auto f = procs.submit(square, 7);
  EXPECT_EQ(f.get(), 49);
  auto pid = procs.submit(my_pid).get();
  EXPECT_NE(pid, static_cast<int>(::getpid()));
  auto pids = procs.worker_pids();
  EXPECT_NE(std::find(pids.begin(), pids.end(), pid), pids.end());
}

TEST(ProcessPool, RunsCaptureLessLambdasAndSeveralArguments) {
  simul::process_pool procs({.workers = 2});
  auto f = procs.submit([](int a, int b) { return a - b; }, 10, 3);
  auto g = procs.submit(mix, 2, 1.5, 'a');
  auto h = procs.submit(flip, point{1, 2});
  auto v = procs.submit(nothing);
  EXPECT_EQ(f.get(), 7);
  EXPECT_DOUBLE_EQ(g.get(), 3.0 + 'a');
  auto p = h.get();
  EXPECT_EQ(p.x, 2);
  EXPECT_EQ(p.y, 1);
  v.get();
}

TEST(ProcessPool, ManyTasksAllComeBackRight) {
  simul::process_pool procs({.workers = 2});
  std::vector<simul::future<int>> futures;
  for (int i = 0; i < 2000; ++i) {
    futures.push_back(procs.submit(square, i));
  }
  for (int i = 0; i < 2000; ++i) {
    EXPECT_EQ(futures[i].get(), i * i);
  }
  EXPECT_EQ(procs.stats().completed, 2000U);
}

TEST(ProcessPool, WorksWithWaitAndAsCompleted) {
  simul::process_pool procs({.workers = 2});
  std::vector<simul::future<int>> futures;
  for (int i = 0; i < 20; ++i) {
    futures.push_back(procs.submit(square, i));
  }
  auto result = simul::wait(futures, simul::return_when::all_completed, 20s);
  EXPECT_EQ(result.done.size(), 20U);
  int sum = 0;
  for (auto& f : simul::as_completed(futures)) {
    sum += f.get();
  }
  EXPECT_EQ(sum, 2470);
}

TEST(ProcessPool, AnExceptionArrivesAsRemoteErrorWithTypeAndMessage) {
  simul::process_pool procs({.workers = 1});
  auto f = procs.submit(thrower, 1);
  try {
    f.get();
    FAIL() << "expected remote_error";
  } catch (const simul::remote_error& e) {
    EXPECT_EQ(e.type_name(), "std::invalid_argument");
    EXPECT_EQ(e.message(), "no such thing");
  }
  // The worker survives an exception.
  EXPECT_EQ(procs.submit(square, 3).get(), 9);
  EXPECT_EQ(procs.stats().crashed, 0U);
}

TEST(ProcessPool, SubmitAfterShutdownThrowsBrokenExecutor) {
  simul::process_pool procs({.workers = 1});
  EXPECT_EQ(procs.submit(square, 2).get(), 4);
  procs.shutdown();
  EXPECT_TRUE(procs.is_shutdown());
  EXPECT_THROW((void)procs.submit(square, 2), simul::broken_executor);
  procs.shutdown(); // idempotent
}

TEST(ProcessPool, ShutdownWaitsForQueuedWork) {
  simul::process_pool procs({.workers = 1});
  std::vector<simul::future<int>> futures;
  for (int i = 0; i < 50; ++i) {
    futures.push_back(procs.submit(square, i));
  }
  procs.shutdown({.wait = true});
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(futures[i].ready());
    EXPECT_EQ(futures[i].get(), i * i);
  }
  EXPECT_TRUE(procs.worker_pids().empty());
}

TEST(ProcessPool, ShutdownCanCancelPendingWork) {
  // Depth 1: no task is sent ahead to the busy worker, so all ten are cancellable.
  simul::process_pool procs({.workers = 1, .pipeline_depth = 1});
  auto slow = procs.submit(
      [](int ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        return 1;
      },
      200);
  std::vector<simul::future<int>> queued;
  for (int i = 0; i < 10; ++i) {
    queued.push_back(procs.submit(square, i));
  }
  std::this_thread::sleep_for(50ms); // let the slow one start
  procs.shutdown({.wait = true, .cancel_pending = true});
  EXPECT_EQ(slow.get(), 1);
  for (auto& f : queued) {
    ASSERT_TRUE(f.ready());
    EXPECT_TRUE(f.cancelled());
    EXPECT_THROW(f.get(), simul::cancelled_error);
  }
}

TEST(ProcessPool, CancelledFutureNeverRuns) {
  simul::process_pool procs({.workers = 1, .pipeline_depth = 1});
  auto slow = procs.submit(
      [](int ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        return 1;
      },
      100);
  auto victim = procs.submit(my_pid);
  EXPECT_TRUE(victim.cancel());
  EXPECT_EQ(slow.get(), 1);
  EXPECT_THROW(victim.get(), simul::cancelled_error);
  EXPECT_EQ(procs.submit(square, 5).get(), 25);
}

TEST(ProcessPool, WorkersAreSingleThreadedEvenIfThePoolIsMadeAfterThreadsStarted) {
  std::mutex held;
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int i = 0; i < 3; ++i) {
    busy.emplace_back([&] {
      while (!stop.load()) {
        std::lock_guard lock(held); // a lock some thread holds while we fork
        std::vector<int> churn(64);
      }
    });
  }
  {
    simul::process_pool procs({.workers = 2});
    EXPECT_EQ(procs.submit(thread_count).get(), 1);
    EXPECT_EQ(procs.submit(square, 11).get(), 121);
  }
  stop = true;
  for (auto& t : busy) {
    t.join();
  }
}

TEST(ProcessPool, WorkersIgnoreSigint) {
  simul::process_pool procs({.workers = 1});
  auto f = procs.submit([] {
    ::raise(SIGINT);
    return 5;
  });
  EXPECT_EQ(f.get(), 5);
  EXPECT_EQ(procs.stats().crashed, 0U);
}

TEST(ProcessPool, ContinuationsRunAndMaySubmitMore) {
  simul::process_pool procs({.workers = 2});
  // The promise is shared with the callback: it must outlive its set_value.
  auto done = std::make_shared<simul::promise<int>>();
  auto result = done->get_future();
  auto first = procs.submit(square, 3);
  first.on_ready([&procs, done] {
    // On the pool's I/O thread: submitting from here must not deadlock.
    procs.submit(square, 4).on_ready([done] { done->set_value(16); });
  });
  EXPECT_EQ(result.get(), 16);
  EXPECT_EQ(first.get(), 9);
}

TEST(ProcessPool, ATaskSentAheadCountsAsStartedAndCannotBeCancelled) {
  simul::process_pool procs({.workers = 1, .pipeline_depth = 2});
  auto slow = procs.submit(
      [](int ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        return 1;
      },
      300);
  auto ahead = procs.submit(square, 6);
  std::this_thread::sleep_for(100ms); // both are in the worker's hands by now
  EXPECT_FALSE(ahead.cancel());
  EXPECT_EQ(slow.get(), 1);
  EXPECT_EQ(ahead.get(), 36);
}
