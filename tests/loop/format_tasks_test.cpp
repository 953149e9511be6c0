// format_tasks / print_tasks: the tree of await chains (format_tasks.hpp).

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The line of `text` that contains `part`, with its leading spaces.
std::string line_with(const std::string& text, const std::string& part) {
  const auto at = text.find(part);
  if (at == std::string::npos) {
    return {};
  }
  const auto begin = text.rfind('\n', at) + 1; // npos + 1 == 0 for the first line
  return text.substr(begin, text.find('\n', at) - begin);
}

std::size_t indent_of(const std::string& line) { return line.find_first_not_of(' '); }

} // namespace

TEST(FormatTasks, ShowsEachChainNestedUnderTheTaskThatAwaitsIt) {
  std::string report;
  auto main = [&]() -> simul::task<void> {
    simul::promise<int> never;
    simul::lock held;
    co_await held.acquire();
    auto deep = [&]() -> simul::task<void> { co_await simul::sleep(10s); };
    auto middle = [&]() -> simul::task<void> { co_await simul::create_task(deep(), "deep"); };
    auto on_future = [&]() -> simul::task<int> { co_return co_await never.get_future(); };
    auto on_lock = [&]() -> simul::task<void> { co_await held.acquire(); };
    auto outer = [&]() -> simul::task<void> {
      auto a = simul::create_task(middle(), "middle");
      auto b = simul::create_task(on_future(), "on-future");
      co_await simul::gather(a, b);
    };
    auto root = simul::create_task(outer(), "outer");
    auto locked = simul::create_task(on_lock(), "on-lock");
    for (int i = 0; i < 4; ++i) {
      co_await simul::yield_now(); // every chain reaches its wait
    }
    auto late = simul::create_task(deep(), "not-started");
    report = simul::format_tasks(simul::get_running_loop());
    root.cancel();
    locked.cancel();
    late.cancel();
    never.set_value(0);
    held.release();
  };
  simul::run(main());

  EXPECT_TRUE(contains(report, "pending tasks")) << report;
  // Roots: the caller, outer, on-lock, not-started; the others nested.
  const auto outer = line_with(report, "'outer'");
  const auto middle = line_with(report, "'middle'");
  const auto deep = line_with(report, "'deep'");
  const auto on_future = line_with(report, "'on-future'");
  ASSERT_FALSE(outer.empty()) << report;
  ASSERT_FALSE(deep.empty()) << report;
  EXPECT_EQ(indent_of(outer), 0U) << report;
  EXPECT_GT(indent_of(middle), indent_of(outer)) << report;
  EXPECT_EQ(indent_of(on_future), indent_of(middle)) << report;
  EXPECT_GT(indent_of(deep), indent_of(middle)) << report;
  EXPECT_EQ(indent_of(line_with(report, "'on-lock'")), 0U) << report;
  EXPECT_TRUE(contains(line_with(report, "awaits gather of 2 tasks"), "gather")) << report;
  EXPECT_TRUE(contains(report, "awaits a sleep, ")) << report;
  EXPECT_TRUE(contains(report, "awaits a simul::future")) << report;
  EXPECT_TRUE(contains(report, "awaits a lock, event")) << report;
  EXPECT_TRUE(contains(report, "running (the caller)")) << report;
  // The task that was just made has not run yet.
  const auto late_at = report.find("'not-started'");
  ASSERT_NE(late_at, std::string::npos) << report;
  EXPECT_TRUE(contains(report.substr(late_at), "not started yet")) << report;
  // Every task line says where the task was made.
  EXPECT_TRUE(contains(deep, "format_tasks_test.cpp:")) << report;
  // Each task appears once.
  EXPECT_EQ(report.find("'deep'"), report.rfind("'deep'")) << report;
}

TEST(FormatTasks, SaysSoWhenNothingIsPending) {
  simul::event_loop loop;
  EXPECT_EQ(simul::format_tasks(loop), "No pending tasks.\n");
  loop.close();
}

TEST(FormatTasks, FromAnotherThreadWhileTheLoopRunsIsAnError) {
  simul::event_loop loop;
  std::thread runner([&loop] { loop.run(); });
  while (!loop.is_running()) {
    std::this_thread::yield();
  }
  EXPECT_THROW((void)simul::format_tasks(loop), simul::error);
  loop.call_soon_threadsafe([&loop] { loop.stop(); });
  runner.join();
  loop.close();
}

// The recipe of docs/loop.md: a running program prints its tasks on SIGUSR1.
TEST(FormatTasks, PrintsOnASignalFromARunningLoop) {
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  auto main = [&]() -> simul::task<void> {
    auto& loop = simul::get_running_loop();
    simul::event printed;
    simul::add_signal_handler(loop, SIGUSR1, [&loop, &printed, out] {
      simul::print_tasks(loop, out);
      printed.set();
    });
    auto nap = []() -> simul::task<void> { co_await simul::sleep(10s); };
    auto sleeper = simul::create_task(nap(), "sleeper");
    co_await simul::yield_now();
    std::raise(SIGUSR1);
    co_await printed.wait();
    simul::remove_signal_handler(loop, SIGUSR1);
    sleeper.cancel();
  };
  simul::run(main());
  std::rewind(out);
  std::string text(4096, '\0');
  text.resize(std::fread(text.data(), 1, text.size(), out));
  std::fclose(out);
  EXPECT_TRUE(contains(text, "'sleeper'")) << text;
  EXPECT_TRUE(contains(text, "awaits a sleep")) << text;
}

// Debug mode's report of a task the closing loop had to destroy says what the
// task still awaited (the same chain format_tasks prints).
TEST(FormatTasks, DebugReportOfATaskDestroyedPendingShowsWhatItAwaited) {
  simul::event_loop loop;
  loop.set_debug(true);
  std::string reported;
  loop.set_exception_handler(
      [&reported](simul::event_loop&, const simul::exception_context& c) { reported += c.message + "\n"; });
  auto stubborn = []() -> simul::task<void> {
    for (;;) { // refuses every cancellation: close() gives up on it after its grace period
      try {
        co_await simul::sleep(10s);
      } catch (const simul::cancelled_error&) {
      }
    }
  };
  auto t = loop.create_task(stubborn(), "stubborn");
  loop.run_until_complete([]() -> simul::task<void> { co_await simul::yield_now(); }());
  loop.close();
  EXPECT_TRUE(contains(reported, "destroyed but it is pending")) << reported;
  EXPECT_TRUE(contains(reported, "it awaits:\n  Task #")) << reported;
  EXPECT_TRUE(contains(reported, "'stubborn'")) << reported;
  EXPECT_TRUE(contains(reported, "awaits a sleep")) << reported;
}
