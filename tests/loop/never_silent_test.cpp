// Never silent (issue #4 item 8): every report names where the task or
// callback involved was created, so each test asserts on this file's own
// name and the line of its create_task / call_soon / ... call.

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

const int k_probe_line = __LINE__ + 1;
simul::task<int> never_awaited_probe(int v) { co_return v + 1; }

// GCC records a coroutine's place at its closing brace.
const int k_sluggish_line = __LINE__ + 4;
simul::task<int> sluggish_probe() {
  std::this_thread::sleep_for(10ms);
  co_return 1;
}

simul::task<void> fail_soon(std::string message) {
  co_await simul::yield_now();
  throw std::runtime_error(message);
}

/// "<this file>:<line>": what a report's `where` starts with.
std::string here(int line) { return std::string(__FILE__) + ":" + std::to_string(line); }

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

/// A debug-mode loop that keeps every report and calls a step slow from 5 ms.
struct reporting_loop {
  simul::event_loop loop;
  std::vector<simul::exception_context> seen;
  reporting_loop() {
    loop.set_debug(true);
    loop.set_slow_callback_duration(5ms);
    loop.set_exception_handler(
        [this](simul::event_loop&, const simul::exception_context& ctx) { seen.push_back(ctx); });
  }
  /// The `where` of every slow-step report (a sanitizer build may make
  /// other steps slow too: the tests look for theirs among them).
  [[nodiscard]] std::vector<std::string> slow_places() const {
    std::vector<std::string> out;
    for (const auto& ctx : seen) {
      if (ctx.message.find("step of") != std::string::npos) {
        out.push_back(ctx.where);
      }
    }
    return out;
  }
};

bool any_starts_with(const std::vector<std::string>& places, const std::string& prefix) {
  return std::ranges::any_of(places, [&prefix](const std::string& p) { return starts_with(p, prefix); });
}

} // namespace

TEST(NeverSilent, UnretrievedExceptionNamesTheTaskAndWhereItWasCreated) {
  std::vector<simul::exception_context> seen;
  int line = 0;
  {
    simul::event_loop loop;
    loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context& ctx) { seen.push_back(ctx); });
    auto main = [](int* line_out) -> simul::task<void> {
      *line_out = __LINE__ + 1;
      (void)simul::create_task(fail_soon("nobody looks"), "orphan");
      // Rounds of the loop, not time: the orphan fails in its second step.
      for (int i = 0; i < 10; ++i) {
        co_await simul::yield_now();
      }
    };
    loop.run_until_complete(main(&line));
    loop.close();
  }
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].message, "Task exception was never retrieved");
  EXPECT_EQ(seen[0].task, "orphan");
  EXPECT_TRUE(starts_with(seen[0].where, here(line) + " (")) << seen[0].where;
  EXPECT_NE(seen[0].where.find(')'), std::string::npos) << seen[0].where;
  ASSERT_TRUE(seen[0].exception);
}

TEST(NeverSilent, LoopCreateTaskRecordsItsCallSiteToo) {
  simul::event_loop loop;
  std::vector<simul::exception_context> seen;
  loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context& ctx) { seen.push_back(ctx); });
  const int line = __LINE__ + 1;
  auto h = loop.create_task(fail_soon("member create_task"));
  loop.run_until_complete([]() -> simul::task<void> {
    for (int i = 0; i < 10; ++i) { // rounds, not time: the task fails in its second step
      co_await simul::yield_now();
    }
  }());
  EXPECT_TRUE(h.done());
  EXPECT_EQ(h.base().where().line(), static_cast<unsigned>(line));
  h = {}; // the last handle: the unretrieved error is reported now
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(starts_with(seen[0].where, here(line))) << seen[0].where;
  EXPECT_EQ(seen[0].task.rfind("Task-", 0), 0u);
  loop.close();
}

TEST(NeverSilent, GatherOfAVectorRecordsTheGatherCallSite) {
  std::vector<simul::exception_context> seen;
  int line = 0;
  {
    simul::event_loop loop;
    loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context& ctx) { seen.push_back(ctx); });
    auto main = [](int* line_out) -> simul::task<void> {
      std::vector<simul::task<void>> ts;
      ts.push_back(fail_soon("first"));
      ts.push_back(fail_soon("second")); // fails after gather gave up: retrieved, not reported
      *line_out = __LINE__ + 1;
      EXPECT_THROW(co_await simul::gather(std::move(ts)), std::runtime_error);
      std::vector<simul::task<void>> more;
      more.push_back(fail_soon("third"));
      *line_out = __LINE__ + 1;
      auto outcomes = co_await simul::gather(simul::return_exceptions, std::move(more));
      EXPECT_FALSE(outcomes[0].has_value());
      EXPECT_EQ(simul::all_tasks().size(), 1u);
    };
    loop.run_until_complete(main(&line));
    loop.close();
  }
  EXPECT_TRUE(seen.empty()); // gather retrieves its children's errors
}

TEST(NeverSilent, SlowCallbackReportNamesWhereItWasScheduled) {
  simul::event_loop loop;
  loop.set_debug(true);
  loop.set_slow_callback_duration(5ms);
  std::vector<simul::exception_context> seen;
  loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context& ctx) { seen.push_back(ctx); });
  const int soon_line = __LINE__ + 1;
  loop.call_soon([] { std::this_thread::sleep_for(10ms); });
  loop.run_once();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(starts_with(seen[0].where, here(soon_line) + " (")) << seen[0].where;
  EXPECT_NE(seen[0].message.find("scheduled at " + here(soon_line)), std::string::npos) << seen[0].message;
  EXPECT_NE(seen[0].message.find("took"), std::string::npos);

  const int later_line = __LINE__ + 1;
  loop.call_later(1ms, [] { std::this_thread::sleep_for(10ms); });
  while (seen.size() < 2) {
    loop.run_once();
  }
  EXPECT_TRUE(starts_with(seen[1].where, here(later_line))) << seen[1].where;

  const int at_line = __LINE__ + 1;
  loop.call_at(loop.time(), [] { std::this_thread::sleep_for(10ms); });
  while (seen.size() < 3) {
    loop.run_once();
  }
  EXPECT_TRUE(starts_with(seen[2].where, here(at_line))) << seen[2].where;

  const int ts_line = __LINE__ + 1;
  std::thread([&loop] { loop.call_soon_threadsafe([] { std::this_thread::sleep_for(10ms); }); }).join();
  while (seen.size() < 4) {
    loop.run_once();
  }
  EXPECT_TRUE(starts_with(seen[3].where, here(ts_line))) << seen[3].where;
  EXPECT_NE(seen[3].message.find("call_soon_threadsafe"), std::string::npos) << seen[3].message;
  loop.close();
}

TEST(NeverSilent, SlowTaskStepReportNamesTheTaskAndWhereItWasCreated) {
  simul::event_loop loop;
  loop.set_debug(true);
  loop.set_slow_callback_duration(5ms);
  std::vector<simul::exception_context> seen;
  loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context& ctx) { seen.push_back(ctx); });
  auto slow = []() -> simul::task<void> {
    std::this_thread::sleep_for(10ms);
    co_return;
  };
  const int line = __LINE__ + 1;
  auto h = loop.create_task(slow(), "sluggish");
  loop.run_until_complete(h);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].task, "sluggish");
  EXPECT_TRUE(starts_with(seen[0].where, here(line))) << seen[0].where;
  EXPECT_NE(seen[0].message.find("step of sluggish created at " + here(line)), std::string::npos) << seen[0].message;
  loop.close();
}

TEST(NeverSilent, QuickCallbacksAreNotReportedInDebugMode) {
  simul::event_loop loop;
  loop.set_debug(true);
  int reports = 0;
  loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context&) { ++reports; });
  int ran = 0;
  loop.call_soon([&] { ++ran; });
  loop.call_soon_threadsafe([&] { ++ran; });
  while (ran < 2) {
    loop.run_once();
  }
  EXPECT_EQ(reports, 0);
  loop.close();
}

TEST(NeverSilent, ExceptionInCallbackNamesWhereItWasScheduled) {
  simul::event_loop loop;
  std::vector<simul::exception_context> seen;
  loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context& ctx) { seen.push_back(ctx); });
  const int line = __LINE__ + 1;
  loop.call_soon([] { throw std::runtime_error("callback failed"); });
  loop.run_once();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].message, "Exception in callback");
  EXPECT_TRUE(starts_with(seen[0].where, here(line))) << seen[0].where;
  loop.close();
}

TEST(NeverSilent, CoroutineNeverAwaitedIsNamedByItsFunction) {
  simul::event_loop loop;
  loop.set_debug(true);
  std::vector<simul::exception_context> seen;
  loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context& ctx) { seen.push_back(ctx); });
  auto main = []() -> simul::task<void> {
    auto forgotten = never_awaited_probe(1); // made, never awaited nor scheduled
    co_return;
  };
  loop.run_until_complete(main());
  loop.close();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_NE(seen[0].message.find("without being awaited"), std::string::npos);
  // The coroutine function's own place: this file, the line of the function
  // (GCC names its last line; one-line function here) and its name.
  EXPECT_TRUE(starts_with(seen[0].where, here(k_probe_line) + " (")) << seen[0].where;
  EXPECT_NE(seen[0].where.find("never_awaited_probe"), std::string::npos) << seen[0].where;
  EXPECT_NE(seen[0].message.find("never_awaited_probe"), std::string::npos) << seen[0].message;
}

TEST(NeverSilent, CoroutineNeverAwaitedIsNotReportedOutsideDebugMode) {
  simul::event_loop loop;
  int reports = 0;
  loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context&) { ++reports; });
  auto main = []() -> simul::task<void> {
    auto forgotten = never_awaited_probe(2);
    co_return;
  };
  loop.run_until_complete(main());
  loop.close();
  EXPECT_EQ(reports, 0);
}

TEST(NeverSilent, TaskGroupCreateTaskRecordsItsCallSite) {
  auto main = []() -> simul::task<void> {
    simul::task_group tg;
    const int line = __LINE__ + 1;
    auto h = tg.create_task([]() -> simul::task<int> { co_return 1; }());
    EXPECT_EQ(h.base().where().line(), static_cast<unsigned>(line));
    EXPECT_EQ(std::string(h.base().where().file_name()), std::string(__FILE__));
    co_await tg.join();
  };
  simul::run(main());
}

TEST(NeverSilent, VariadicGatherChildrenCarryTheirCoroutinesOwnPlace) {
  reporting_loop r;
  auto main = []() -> simul::task<int> {
    auto [a, b] = co_await simul::gather(sluggish_probe(), never_awaited_probe(1));
    co_return a + b;
  };
  EXPECT_EQ(r.loop.run_until_complete(main()), 3);
  r.loop.close();
  const auto places = r.slow_places();
  EXPECT_TRUE(any_starts_with(places, here(k_sluggish_line) + " (")) << ::testing::PrintToString(places);
  for (const auto& p : places) {
    EXPECT_EQ(p.find("gather.hpp"), std::string::npos) << p;
  }
}

TEST(NeverSilent, AsCompletedOverTasksRecordsItsCallSite) {
  reporting_loop r;
  int line = 0;
  auto main = [](int* line_out) -> simul::task<int> {
    std::vector<simul::task<int>> tasks;
    tasks.push_back(sluggish_probe());
    int sum = 0;
    *line_out = __LINE__ + 1;
    for (auto next : simul::as_completed(std::move(tasks))) {
      sum += co_await next;
    }
    co_return sum;
  };
  EXPECT_EQ(r.loop.run_until_complete(main(&line)), 1);
  r.loop.close();
  EXPECT_TRUE(any_starts_with(r.slow_places(), here(line))) << ::testing::PrintToString(r.slow_places());
}

TEST(NeverSilent, RunUntilCompleteRecordsItsCallSite) {
  reporting_loop r;
  const int line = __LINE__ + 1;
  EXPECT_EQ(r.loop.run_until_complete(sluggish_probe()), 1);
  r.loop.close();
  EXPECT_TRUE(any_starts_with(r.slow_places(), here(line))) << ::testing::PrintToString(r.slow_places());
}

TEST(NeverSilent, RunCoroutineThreadsafeRecordsItsCallSite) {
  reporting_loop r;
  int line = 0;
  std::thread other([&] {
    line = __LINE__ + 1;
    auto f = simul::run_coroutine_threadsafe(sluggish_probe(), r.loop);
    EXPECT_EQ(f.get(), 1);
    r.loop.stop();
  });
  r.loop.run();
  other.join();
  r.loop.close();
  EXPECT_TRUE(any_starts_with(r.slow_places(), here(line))) << ::testing::PrintToString(r.slow_places());
}
