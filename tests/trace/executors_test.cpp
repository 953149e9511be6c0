// The executors' hooks: a loop program's exact schedule on the loop thread's
// lane and on each task's lane (with its waits), thread-pool tasks on their
// workers' lanes, process-pool tasks on their worker processes' lanes, and
// SIMUL_TRACE in a child process.

#include "trace_test_util.hpp"

#include <simul/loop.hpp>
#include <simul/procpool.hpp>
#include <simul/threadpool.hpp>
#include <simul/trace.hpp>

#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

using namespace std::chrono_literals;

namespace {

using simul::trace::slice;
using trace_test::find_lane;
using trace_test::run_names;

int this_tid() { return static_cast<int>(::syscall(SYS_gettid)); }

simul::task<void> sleeper(std::chrono::milliseconds d) {
  co_await simul::sleep(d); // step 1 ends here; step 2 after the timer
}

simul::task<void> two_sleepers() {
  auto a = simul::create_task(sleeper(1ms), "A");
  auto b = simul::create_task(sleeper(5ms), "B");
  co_await a;
  co_await b;
}

simul::task<void> waits_for(simul::event& e) { co_await e.wait(); }
simul::task<void> sets(simul::event& e) {
  e.set();
  co_return;
}

// No timers, nothing that depends on time: one schedule only.
simul::task<void> a_waits_for_b() {
  simul::event e;
  auto a = simul::create_task(waits_for(e), "A");
  auto b = simul::create_task(sets(e), "B");
  co_await a;
  co_await b;
}

TEST(TraceLoop, TheLanesHoldExactlyTheSchedule) {
  simul::trace::start();
  simul::run(a_waits_for_b());
  simul::trace::stop();
  const auto t = simul::trace::collect();
  const auto* loop_lane = trace_test::find_thread(t, this_tid());
  ASSERT_NE(loop_lane, nullptr);
  // main starts A and B and waits for A; A waits for the event; B sets it
  // and ends; A wakes and ends, which wakes main; B is done: main ends.
  const auto main_name = run_names(t, *loop_lane).front();
  EXPECT_EQ(main_name.rfind("Task-", 0), 0U) << main_name;
  EXPECT_EQ(run_names(t, *loop_lane), (std::vector<std::string>{main_name, "A", "B", "A", main_name}));
  const auto* a = find_lane(t, "A");
  ASSERT_NE(a, nullptr);
  EXPECT_NE(a->where.find("executors_test.cpp:"), std::string::npos) << a->where;
  std::vector<slice::kind> kinds;
  for (const auto& s : a->slices) {
    kinds.push_back(s.what);
  }
  // Its life, then run, wait (on the event), run.
  ASSERT_EQ(kinds,
            (std::vector<slice::kind>{slice::kind::task, slice::kind::run, slice::kind::wait, slice::kind::run}));
  EXPECT_FALSE(a->slices[2].name.empty());
  EXPECT_EQ(a->slices[2].begin <= a->slices[1].end && a->slices[2].end == a->slices[3].begin, true);
  EXPECT_EQ(a->slices[0].begin <= a->slices[1].begin && a->slices[3].end <= a->slices[0].end, true);
  // B never waited: its life and one run.
  const auto* b = find_lane(t, "B");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->slices.size(), 2U);
}

TEST(TraceLoop, ASleepIsAWaitOnTheSleep) {
  simul::trace::start();
  simul::run(sleeper(2ms));
  simul::trace::stop();
  const auto t = simul::trace::collect();
  const simul::trace::lane* task = nullptr;
  for (const auto& l : t.lanes) {
    task = l.task != 0 ? &l : task;
  }
  ASSERT_NE(task, nullptr);
  ASSERT_EQ(task->slices.size(), 4U);
  EXPECT_EQ(task->slices[2].what, slice::kind::wait);
  EXPECT_NE(task->slices[2].name.find("sleep"), std::string::npos) << task->slices[2].name;
  EXPECT_GE(task->slices[2].end - task->slices[2].begin, 2'000'000); // at least the 2 ms asked for
}

TEST(TraceThreadPool, EachTaskIsASliceOnItsWorkersLane) {
  simul::thread_pool pool({.workers = 2, .name = "traced"});
  std::mutex mutex;
  std::map<int, int> runs_by_tid;
  simul::trace::start();
  std::vector<simul::future<void>> results;
  for (int i = 0; i < 20; ++i) {
    results.push_back(pool.submit([&] {
      std::this_thread::sleep_for(100us);
      const std::lock_guard lock(mutex);
      ++runs_by_tid[this_tid()];
    }));
  }
  for (auto& r : results) {
    r.get();
  }
  pool.wait_idle();
  simul::trace::stop();
  const auto t = simul::trace::collect();
  ASSERT_FALSE(runs_by_tid.empty());
  for (const auto& [tid, runs] : runs_by_tid) {
    const auto* lane = trace_test::find_thread(t, tid);
    ASSERT_NE(lane, nullptr) << tid;
    EXPECT_EQ(lane->name.rfind("traced-", 0), 0U) << lane->name;
    EXPECT_EQ(static_cast<int>(run_names(t, *lane).size()), runs) << lane->name;
  }
}

// SIMUL_TRACE in a child: this same test program, one test.
TEST(TraceEnv, Child) {
  if (std::getenv("SIMUL_TRACE") == nullptr) {
    GTEST_SKIP() << "run by TraceEnv.WritesTheFileAtExit";
  }
  EXPECT_EQ(simul::trace::enabled(), std::getenv("SIMUL_TRACE_EXPECT_ON") != nullptr);
  simul::run(two_sleepers());
}

int run_child(const std::string& env, const std::string& err) {
  const auto command =
      env + " /proc/" + std::to_string(::getpid()) + "/exe --gtest_filter=TraceEnv.Child >/dev/null 2>" + err;
  return std::system(command.c_str());
}

TEST(TraceEnv, WritesTheFileAtExit) {
  const auto json = trace_test::temp_file("env.json");
  const auto svg = trace_test::temp_file("env.svg");
  const auto err = trace_test::temp_file("env.err");
  ASSERT_EQ(run_child("SIMUL_TRACE=" + json + " SIMUL_TRACE_EXPECT_ON=1", err), 0);
  EXPECT_EQ(trace_test::check_file("json", json, "A B"), 0);
  ASSERT_EQ(run_child("SIMUL_TRACE=" + svg + " SIMUL_TRACE_EXPECT_ON=1", err), 0);
  EXPECT_EQ(trace_test::check_file("svg", svg, "A B"), 0);
  std::remove(json.c_str());
  std::remove(svg.c_str());
}

TEST(TraceEnv, AnUnknownExtensionIsReportedAndNothingIsTraced) {
  const auto err = trace_test::temp_file("env_bad.err");
  ASSERT_EQ(run_child("SIMUL_TRACE=" + trace_test::temp_file("run.txt"), err), 0);
  std::stringstream text;
  text << std::ifstream(err).rdbuf();
  EXPECT_NE(text.str().find("must end in .json or .svg"), std::string::npos) << text.str();
  std::remove(err.c_str());
}

} // namespace

namespace {

int worker_pid(int) {
  std::this_thread::sleep_for(1ms);
  return static_cast<int>(::getpid());
}

TEST(TraceProcessPool, EachTaskIsASliceOnItsWorkerProcessLane) {
  simul::process_pool pool({.workers = 2});
  simul::trace::start();
  std::vector<simul::future<int>> results;
  for (int i = 0; i < 12; ++i) {
    results.push_back(pool.submit(&worker_pid, i));
  }
  std::map<int, int> runs_by_pid;
  for (auto& r : results) {
    ++runs_by_pid[r.get()];
  }
  simul::trace::stop();
  const auto t = simul::trace::collect();
  for (const auto& [pid, runs] : runs_by_pid) {
    const auto* lane = find_lane(t, "worker process " + std::to_string(pid));
    ASSERT_NE(lane, nullptr) << pid;
    EXPECT_EQ(lane->pid, pid);
    EXPECT_EQ(static_cast<int>(lane->slices.size()), runs);
    for (const auto& s : lane->slices) {
      EXPECT_GE(s.end - s.begin, 1'000'000); // the 1 ms sleep, measured in the worker
      EXPECT_GE(s.begin, t.begin);
    }
  }
}

} // namespace
