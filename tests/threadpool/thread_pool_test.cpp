#include <simul/threadpool.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

using namespace std::chrono_literals;

TEST(ThreadPool, ModelsTheExecutorConcept) {
  static_assert(simul::executor<simul::thread_pool>);
  SUCCEED();
}

TEST(ThreadPool, SubmitReturnsTheResultThroughAFuture) {
  simul::thread_pool pool({.workers = 2, .name = "basic"});
  EXPECT_EQ(pool.workers(), 2U);
  EXPECT_EQ(pool.name(), "basic");
  auto f = pool.submit([](int a, int b) { return a * b; }, 6, 7);
  EXPECT_EQ(f.get(), 42);
  auto v = pool.submit([] {});
  EXPECT_NO_THROW(v.get());
}

TEST(ThreadPool, DefaultsToTheHardwareConcurrency) {
  simul::thread_pool pool;
  EXPECT_EQ(pool.workers(), std::max(1U, std::thread::hardware_concurrency()));
}

TEST(ThreadPool, RunsTasksOnWorkerThreadsNotTheCaller) {
  simul::thread_pool pool({.workers = 2});
  auto f = pool.submit([&pool] { return std::make_pair(std::this_thread::get_id(), pool.on_worker_thread()); });
  auto [id, on_worker] = f.get();
  EXPECT_NE(id, std::this_thread::get_id());
  EXPECT_TRUE(on_worker);
  EXPECT_FALSE(pool.on_worker_thread());
}

TEST(ThreadPool, CopiesArgumentsAndTakesMoveOnlyOnes) {
  simul::thread_pool pool({.workers = 1});
  std::string text = "abc";
  auto f = pool.submit(
      [](std::string s) {
        s += "d";
        return s;
      },
      text);
  EXPECT_EQ(f.get(), "abcd");
  EXPECT_EQ(text, "abc");
  auto g = pool.submit([](std::unique_ptr<int> p) { return *p + 1; }, std::make_unique<int>(4));
  EXPECT_EQ(g.get(), 5);
}

TEST(ThreadPool, HoldsLargeCallablesToo) {
  simul::thread_pool pool({.workers = 1});
  std::array<long, 32> big{};
  big[31] = 9;
  auto f = pool.submit([big] { return big[31]; });
  EXPECT_EQ(f.get(), 9);
  std::atomic<long> seen{0};
  pool.post([big, &seen] { seen = big[31]; });
  pool.wait_idle();
  EXPECT_EQ(seen.load(), 9);
}

TEST(ThreadPool, ExceptionsArriveThroughTheFuture) {
  simul::thread_pool pool({.workers = 2});
  auto f = pool.submit([]() -> int { throw std::invalid_argument("bad input"); });
  EXPECT_THROW(f.get(), std::invalid_argument);
  pool.wait_idle();
  auto s = pool.stats();
  EXPECT_EQ(s.failed, 1U);
  EXPECT_EQ(s.completed, 0U);
}

TEST(ThreadPool, PostRunsEveryTaskBeforeWaitIdleReturns) {
  simul::thread_pool pool({.workers = 3});
  std::atomic<int> count{0};
  for (int i = 0; i < 10'000; ++i) {
    pool.post([&count] { count.fetch_add(1, std::memory_order_relaxed); });
  }
  pool.wait_idle();
  EXPECT_EQ(count.load(), 10'000);
  auto s = pool.stats();
  EXPECT_EQ(s.completed, 10'000U);
  EXPECT_EQ(s.submitted, 10'000U);
  EXPECT_EQ(s.queued, 0U);
  EXPECT_EQ(s.running, 0U);
}

TEST(ThreadPool, EachThreadsSubmissionsStartInOrder) {
  // One worker, several submitting threads (more of them than the pool has
  // lanes on a small machine, so some share one): tasks from one thread start
  // in the order that thread submitted them.
  simul::thread_pool pool({.workers = 1});
  constexpr int threads = 5;
  constexpr int per_thread = 4'000;
  std::vector<std::vector<int>> started(threads); // written by the one worker only
  std::vector<std::thread> submitters;
  for (int t = 0; t < threads; ++t) {
    submitters.emplace_back([&pool, &started, t] {
      for (int i = 0; i < per_thread; ++i) {
        pool.post([&started, t, i] { started[t].push_back(i); });
      }
    });
  }
  for (auto& thread : submitters) {
    thread.join();
  }
  pool.wait_idle();
  for (int t = 0; t < threads; ++t) {
    ASSERT_EQ(started[t].size(), static_cast<std::size_t>(per_thread)) << "thread " << t;
    for (int i = 0; i < per_thread; ++i) {
      ASSERT_EQ(started[t][i], i) << "thread " << t;
    }
  }
}

TEST(ThreadPool, ABacklogStartsInOrderWhenTakenInBatches) {
  // The one worker is held while 1,000 tasks queue up behind it, so it takes
  // them from the lane in batches (several tasks per take) and must still
  // start them in submission order.
  simul::thread_pool pool({.workers = 1});
  std::atomic<bool> release{false};
  pool.post([&release] {
    while (!release.load()) {
      std::this_thread::sleep_for(1ms);
    }
  });
  constexpr int backlog = 1'000;
  std::vector<int> started; // written by the one worker only
  for (int i = 0; i < backlog; ++i) {
    pool.post([&started, i] { started.push_back(i); });
  }
  // Once the worker runs the blocker, all of it waits behind it (before, the
  // blocker counts as queued too).
  for (int tries = 0; pool.stats().running == 0 && tries < 10'000; ++tries) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(pool.stats().queued, static_cast<std::size_t>(backlog));
  release = true;
  pool.wait_idle();
  ASSERT_EQ(started.size(), static_cast<std::size_t>(backlog));
  for (int i = 0; i < backlog; ++i) {
    ASSERT_EQ(started[i], i);
  }
}

TEST(ThreadPool, StatsCountWorkQueuedByEverySubmittingThread) {
  simul::thread_pool pool({.workers = 1});
  std::atomic<bool> release{false};
  auto blocker = pool.submit([&release] {
    while (!release.load()) {
      std::this_thread::sleep_for(1ms);
    }
  });
  while (pool.stats().running == 0) {
    std::this_thread::sleep_for(1ms);
  }
  std::vector<std::thread> submitters;
  for (int t = 0; t < 3; ++t) {
    submitters.emplace_back([&pool] {
      for (int i = 0; i < 10; ++i) {
        pool.post([] {});
      }
    });
  }
  for (auto& thread : submitters) {
    thread.join();
  }
  auto s = pool.stats();
  EXPECT_EQ(s.queued, 30U);
  EXPECT_EQ(s.submitted, 31U);
  EXPECT_EQ(s.running, 1U);
  release = true;
  blocker.get();
  pool.wait_idle();
  s = pool.stats();
  EXPECT_EQ(s.queued, 0U);
  EXPECT_EQ(s.completed, 31U);
}

TEST(ThreadPool, StatsCountEveryTaskWhileBatchesMove) {
  // One worker takes tasks from one submitting thread's lane in batches. At
  // any moment an accepted task is queued (in the lane, on its way to the
  // worker's deque, or in the deque), running, or finished; a snapshot may
  // miss only the task in the submitter's hands (counted as submitted, not
  // yet published) and the one in the worker's (taken and not yet counted
  // running, or no longer running and not yet counted finished).
  simul::thread_pool pool({.workers = 1});
  constexpr int total = 100'000;
  std::atomic<bool> submitted_all{false};
  std::thread submitter([&pool, &submitted_all] {
    for (int i = 0; i < total; ++i) {
      pool.post([] {});
    }
    submitted_all = true;
  });
  std::uint64_t worst = 0;
  for (bool last = false; !last;) {
    last = submitted_all.load();
    const auto s = pool.stats();
    const auto accounted = s.queued + s.running + s.completed + s.failed + s.cancelled;
    if (s.submitted > accounted) {
      worst = std::max(worst, s.submitted - accounted);
    }
  }
  submitter.join();
  pool.wait_idle();
  EXPECT_LE(worst, 2U) << "a snapshot missed tasks that were on their way";
  EXPECT_EQ(pool.stats().completed, static_cast<std::uint64_t>(total));
}

TEST(ThreadPool, WaitIdleOnAnIdlePoolReturnsAtOnce) {
  simul::thread_pool pool({.workers = 2});
  pool.wait_idle();
  pool.wait_idle();
  SUCCEED();
}

TEST(ThreadPool, PostExceptionsGoToTheHandlerWithTheirMessage) {
  std::mutex lock;
  std::vector<std::string> seen;
  simul::thread_pool pool(
      {.workers = 2, .name = "handled", .initializer = {}, .exception_handler = [&](std::exception_ptr e) {
         try {
           std::rethrow_exception(e);
         } catch (const std::exception& ex) {
           std::lock_guard guard(lock);
           seen.emplace_back(ex.what());
         }
       }});
  pool.post([] { throw std::runtime_error("first"); });
  pool.post([] {});
  pool.wait_idle();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0], "first");
  EXPECT_EQ(pool.stats().failed, 1U);
  EXPECT_EQ(pool.stats().completed, 1U);

  // Replaced at run time.
  std::atomic<int> replaced{0};
  pool.set_exception_handler([&](std::exception_ptr) { replaced.fetch_add(1); });
  pool.post([] { throw 42; });
  pool.wait_idle();
  EXPECT_EQ(replaced.load(), 1);
  EXPECT_EQ(pool.stats().failed, 2U);
}

TEST(ThreadPool, DefaultHandlerPrintsThePoolNameAndMessage) {
  testing::internal::CaptureStderr();
  {
    simul::thread_pool pool({.workers = 1, .name = "printer"});
    pool.post([] { throw std::runtime_error("lost?"); });
    pool.wait_idle();
    EXPECT_EQ(pool.stats().failed, 1U);
  }
  const auto text = testing::internal::GetCapturedStderr();
  EXPECT_NE(text.find("printer"), std::string::npos) << text;
  EXPECT_NE(text.find("lost?"), std::string::npos) << text;
}

TEST(ThreadPool, AThrowingHandlerIsReportedNotFatal) {
  testing::internal::CaptureStderr();
  {
    simul::thread_pool pool({.workers = 1, .name = "angry"});
    pool.set_exception_handler([](std::exception_ptr) { throw std::logic_error("handler broke"); });
    pool.post([] { throw std::runtime_error("task broke"); });
    pool.wait_idle();
    auto f = pool.submit([] { return 1; });
    EXPECT_EQ(f.get(), 1);
  }
  const auto text = testing::internal::GetCapturedStderr();
  EXPECT_NE(text.find("handler broke"), std::string::npos) << text;
  EXPECT_NE(text.find("task broke"), std::string::npos) << text;
}

TEST(ThreadPool, InitializerRunsOnEveryWorkerBeforeTasks) {
  std::mutex lock;
  std::set<std::thread::id> initialised;
  simul::thread_pool pool({.workers = 3, .name = "init", .initializer = [&] {
                             std::lock_guard guard(lock);
                             initialised.insert(std::this_thread::get_id());
                           }});
  std::vector<simul::future<bool>> checks;
  for (int i = 0; i < 50; ++i) {
    checks.push_back(pool.submit([&] {
      std::lock_guard guard(lock);
      return initialised.count(std::this_thread::get_id()) == 1;
    }));
  }
  for (auto& c : checks) {
    EXPECT_TRUE(c.get());
  }
  pool.shutdown();
  EXPECT_EQ(initialised.size(), 3U);
}

TEST(ThreadPool, ThrowingInitializerBreaksThePoolWithTheCause) {
  testing::internal::CaptureStderr();
  simul::thread_pool pool(
      {.workers = 2, .name = "doomed", .initializer = [] { throw std::runtime_error("no database"); }});
  // Work queued before the break fails with broken_executor; submit after it throws.
  std::vector<simul::future<int>> queued;
  bool submit_threw = false;
  try {
    for (int i = 0; i < 5; ++i) {
      queued.push_back(pool.submit([] { return 1; }));
    }
  } catch (const simul::broken_executor&) {
    submit_threw = true;
  }
  (void)submit_threw;
  for (auto& f : queued) {
    try {
      (void)f.get();
      ADD_FAILURE() << "a task ran on a pool whose initializer always throws";
    } catch (const simul::broken_executor& e) {
      ASSERT_TRUE(e.cause());
      EXPECT_THROW(std::rethrow_exception(e.cause()), std::runtime_error);
      EXPECT_NE(std::string(e.what()).find("no database"), std::string::npos);
    }
  }
  // Wait until the break has happened for sure, then every submit throws.
  while (!pool.is_shutdown()) {
    std::this_thread::sleep_for(1ms);
  }
  try {
    (void)pool.submit([] { return 2; });
    ADD_FAILURE() << "submit on a broken pool did not throw";
  } catch (const simul::broken_executor& e) {
    ASSERT_TRUE(e.cause());
    try {
      std::rethrow_exception(e.cause());
    } catch (const std::runtime_error& cause) {
      EXPECT_STREQ(cause.what(), "no database");
    }
  }
  EXPECT_THROW(pool.post([] {}), simul::broken_executor);
  pool.wait_idle();
  const auto text = testing::internal::GetCapturedStderr();
  EXPECT_NE(text.find("doomed"), std::string::npos) << text;
}

TEST(ThreadPool, WorksWithWaitAndAsCompleted) {
  simul::thread_pool pool({.workers = 2});
  std::atomic<bool> release{false};
  std::vector<simul::future<int>> futures;
  futures.push_back(pool.submit([&release] {
    while (!release.load()) {
      std::this_thread::sleep_for(1ms);
    }
    return 1;
  }));
  futures.push_back(pool.submit([] { return 2; }));
  auto first = simul::wait(futures, simul::return_when::first_completed);
  ASSERT_EQ(first.done.size(), 1U);
  EXPECT_EQ(first.done[0], &futures[1]);
  release = true;
  std::vector<int> order;
  for (auto& f : simul::as_completed(futures)) {
    order.push_back(f.get());
  }
  EXPECT_EQ(order.size(), 2U);
  auto all = simul::wait(futures, simul::return_when::all_completed);
  EXPECT_EQ(all.done.size(), 2U);
}

TEST(ThreadPool, SubmitsFromOtherPoolsTasks) {
  simul::thread_pool a({.workers = 1, .name = "a"});
  simul::thread_pool b({.workers = 1, .name = "b"});
  auto f = a.submit([&b] { return b.submit([] { return 5; }).get() + 1; });
  EXPECT_EQ(f.get(), 6);
}

// CPU time, in nanoseconds, of this process's threads whose name starts with
// `prefix` (the pool names its workers "<name>-<index>"). Read per thread from
// /proc rather than with getrusage(RUSAGE_SELF), which also counts the
// sanitizers' own background threads.
std::int64_t cpu_ns_of_threads_named(const std::string& prefix) {
  std::int64_t total = 0;
  int threads = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind(prefix, 0) != 0) {
      continue;
    }
    std::ifstream schedstat(entry.path() / "schedstat");
    std::int64_t on_cpu_ns = 0;
    if (schedstat >> on_cpu_ns) {
      total += on_cpu_ns;
      ++threads;
    }
  }
  EXPECT_GT(threads, 0) << "no thread named " << prefix << "* found in /proc/self/task";
  return total;
}

TEST(ThreadPool, IdlePoolUsesAlmostNoCpu) {
  simul::thread_pool pool({.workers = 4, .name = "idle-probe"});
  // Let the workers finish starting and fall asleep.
  pool.submit([] {}).get();
  pool.wait_idle();
  std::this_thread::sleep_for(50ms);
  const auto before = cpu_ns_of_threads_named("idle-probe-");
  rusage usage_before{};
  ::getrusage(RUSAGE_SELF, &usage_before);
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(1s);
  const auto wall = std::chrono::steady_clock::now() - start;
  rusage usage_after{};
  ::getrusage(RUSAGE_SELF, &usage_after);
  const auto workers_cpu = std::chrono::nanoseconds(cpu_ns_of_threads_named("idle-probe-") - before);
  EXPECT_LT(workers_cpu * 100, wall) << "the idle pool's 4 workers used "
                                     << std::chrono::duration_cast<std::chrono::microseconds>(workers_cpu).count()
                                     << " us of CPU in a second";
  // The whole process (this thread asleep, plus whatever a sanitizer runs) stays far from busy too.
  auto micros = [](const timeval& t) { return t.tv_sec * 1'000'000L + t.tv_usec; };
  const long process_cpu_us = (micros(usage_after.ru_utime) - micros(usage_before.ru_utime)) +
                              (micros(usage_after.ru_stime) - micros(usage_before.ru_stime));
  EXPECT_LT(process_cpu_us, 200'000) << "the process used " << process_cpu_us << " us of CPU in a second";
}

// A burst of blocking tasks from outside must wake every worker, round after
// round: each task here waits until all of its round are running at once, so
// a pool that leaves workers asleep never lets a round finish (the tasks give
// up after a generous deadline and report it).
TEST(ThreadPool, ABurstOfBlockingTasksWakesEveryWorker) {
  constexpr int threads = 8;
  simul::thread_pool pool({.workers = threads, .name = "burst"});
  for (int round = 0; round < 300; ++round) {
    std::atomic<int> arrived{0};
    std::vector<simul::future<bool>> tasks;
    for (int i = 0; i < threads; ++i) {
      tasks.push_back(pool.submit([&arrived] {
        arrived.fetch_add(1);
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (arrived.load() < threads) {
          if (std::chrono::steady_clock::now() > deadline) {
            return false;
          }
          std::this_thread::sleep_for(100us);
        }
        return true;
      }));
    }
    for (auto& t : tasks) {
      ASSERT_TRUE(t.get()) << "round " << round << ": only " << arrived.load() << " of " << threads
                           << " tasks ran at once";
    }
  }
}
