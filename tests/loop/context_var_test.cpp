// context_var: asyncio's contextvars (CPython's test_context.py and
// test_tasks.py: test_context_1 / test_context_3 / test_to_thread_context).

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {
simul::context_var<int> cvar("cvar", 0);
simul::context_var<std::string> request_id("request_id");
} // namespace

// test_context.py: test_context_var_new_1 / get with and without a default.
TEST(ContextVar, GetSetResetAndDefaults) {
  auto main = []() -> simul::task<void> {
    EXPECT_EQ(cvar.get(), 0);
    EXPECT_THROW((void)request_id.get(), simul::lookup_error);
    EXPECT_EQ(request_id.get("fallback"), "fallback");
    auto t1 = request_id.set("a");
    EXPECT_EQ(request_id.get(), "a");
    auto t2 = request_id.set("b");
    EXPECT_EQ(t2.old_value(), "a");
    EXPECT_EQ(request_id.get(), "b");
    request_id.reset(t2);
    EXPECT_EQ(request_id.get(), "a");
    EXPECT_THROW(request_id.reset(t2), simul::error); // used
    request_id.reset(t1);
    EXPECT_THROW((void)request_id.get(), simul::lookup_error);
    EXPECT_FALSE(t1.old_value().has_value());
    simul::context_var<int> other("other");
    auto tc = cvar.set(3);
    EXPECT_THROW(other.reset(tc), simul::error); // another variable's token
    cvar.reset(tc);
    co_return;
  };
  simul::run(main());
}

// test_tasks.py: test_context_1 / test_context_3. A task starts with a copy of
// its creator's context; what it sets stays in it.
TEST(ContextVar, ATaskStartsWithACopyOfItsCreatorsContext) {
  auto main = []() -> simul::task<void> {
    auto token = cvar.set(1);
    std::vector<int> seen;
    auto child = [&]() -> simul::task<void> {
      seen.push_back(cvar.get()); // the creator's value
      cvar.set(cvar.get() + 10);
      co_await simul::yield_now();
      seen.push_back(cvar.get()); // its own, after other tasks ran
      auto grandchild = [&]() -> simul::task<void> {
        seen.push_back(cvar.get());
        co_return;
      };
      co_await simul::create_task(grandchild());
    };
    auto t = simul::create_task(child());
    cvar.set(2); // after creation: the child does not see it
    co_await t;
    EXPECT_EQ(seen, (std::vector<int>{1, 11, 11}));
    EXPECT_EQ(cvar.get(), 2); // the child's set stayed in the child
    cvar.reset(token);
    EXPECT_EQ(cvar.get(), 0);
    // A token of another task is refused.
    simul::context_var<int>::token* foreign = nullptr;
    std::optional<simul::context_var<int>::token> kept;
    auto other = [&]() -> simul::task<void> {
      kept.emplace(cvar.set(5));
      co_return;
    };
    co_await simul::create_task(other());
    foreign = &*kept;
    EXPECT_THROW(cvar.reset(*foreign), simul::error);
  };
  simul::run(main());
}

// test_threads.py: test_to_thread_contextvars. to_thread and run_in_executor
// run the function in a copy of the caller's context.
TEST(ContextVar, ToThreadAndRunInExecutorCarryTheContext) {
  auto main = []() -> simul::task<void> {
    request_id.set("req-7");
    auto in_thread = co_await simul::to_thread([] {
      auto v = request_id.get();
      request_id.set("changed in the thread"); // stays in the thread's copy
      return v;
    });
    EXPECT_EQ(in_thread, "req-7");
    EXPECT_EQ(request_id.get(), "req-7");
    simul::thread_pool pool({.workers = 1});
    auto& loop = simul::current_task().base().loop();
    auto via_executor = co_await loop.run_in_executor(
        pool, [](int n) { return request_id.get() + std::to_string(n); }, 1);
    EXPECT_EQ(via_executor, "req-71");
    // The worker thread is left with no context afterwards.
    auto after = co_await loop.run_in_executor(pool, [] { return request_id.get("none"); });
    EXPECT_EQ(after, "req-7"); // carried again from this task
    auto bare = pool.submit([] { return request_id.get("none"); });
    EXPECT_EQ(co_await bare, "none");
  };
  simul::run(main());
}
