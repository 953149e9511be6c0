// <simul/loop/event_loop.hpp> alone gives what it always gave: tasks,
// create_task, run_until_complete, run, get_future, submit. This translation
// unit includes nothing else of simul (the header must stand on its own, and
// no include cycle may be needed to complete it).

#include <simul/loop/event_loop.hpp>

#include <gtest/gtest.h>

#include <string>

namespace {

simul::task<int> answer() { co_return 42; }

simul::task<std::string> named_child() {
  auto me = simul::current_task();
  co_return me.get_name();
}

simul::task<int> parent() {
  auto child = simul::create_task(answer());
  auto named = simul::create_task(named_child(), "child");
  const auto name = co_await named;
  co_return co_await child + static_cast<int>(name.size());
}

} // namespace

TEST(EventLoopHeader, AloneGivesCreateTaskAndRunUntilComplete) {
  simul::event_loop loop;
  EXPECT_EQ(loop.run_until_complete(parent()), 42 + 5);
  auto handle = loop.create_task(answer(), "by-name");
  EXPECT_EQ(handle.get_name(), "by-name");
  auto future = handle.get_future();
  EXPECT_EQ(loop.run_until_complete(handle), 42);
  loop.run_once(); // the future is completed by a done callback, on the next iteration
  EXPECT_EQ(future.get(), 42);
  loop.close();
}

TEST(EventLoopHeader, AloneGivesRunAndSubmit) {
  EXPECT_EQ(simul::run(answer()), 42);
  simul::event_loop loop;
  auto f = loop.submit([] { return 7; });
  loop.run_once();
  EXPECT_EQ(f.get(), 7);
  loop.close();
}
