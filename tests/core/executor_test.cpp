#include <simul/core/executor.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

TEST(InlineExecutor, ModelsTheExecutorConcept) {
  static_assert(simul::executor<simul::inline_executor>);
  static_assert(!simul::executor<int>);
  SUCCEED();
}

TEST(InlineExecutor, RunsOnTheSubmittingThreadAtOnce) {
  simul::inline_executor ex;
  std::thread::id ran_on;
  auto f = ex.submit(
      [&ran_on](int a, int b) {
        ran_on = std::this_thread::get_id();
        return a + b;
      },
      2, 3);
  EXPECT_TRUE(f.ready());
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_EQ(f.get(), 5);
}

TEST(InlineExecutor, CopiesItsArguments) {
  simul::inline_executor ex;
  std::string text = "abc";
  auto f = ex.submit(
      [](std::string s) {
        s += "d";
        return s;
      },
      text);
  EXPECT_EQ(f.get(), "abcd");
  EXPECT_EQ(text, "abc");
}

TEST(InlineExecutor, TakesMoveOnlyArguments) {
  simul::inline_executor ex;
  auto f = ex.submit([](std::unique_ptr<int> p) { return *p; }, std::make_unique<int>(4));
  EXPECT_EQ(f.get(), 4);
}

TEST(InlineExecutor, ExceptionsArriveThroughTheFuture) {
  simul::inline_executor ex;
  auto f = ex.submit([]() -> int { throw std::invalid_argument("nope"); });
  EXPECT_THROW(f.get(), std::invalid_argument);
  auto v = ex.submit([] {});
  EXPECT_NO_THROW(v.get());
}

TEST(InlineExecutor, SubmitAfterShutdownThrowsBrokenExecutor) {
  simul::inline_executor ex;
  EXPECT_FALSE(ex.is_shutdown());
  ex.shutdown();
  EXPECT_TRUE(ex.is_shutdown());
  EXPECT_THROW((void)ex.submit([] { return 1; }), simul::broken_executor);
}
