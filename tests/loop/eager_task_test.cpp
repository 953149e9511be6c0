// Eager tasks (Python 3.12's eager task factory): create_task runs the task
// at once, until its first real suspension. Each test names the CPython test
// it mirrors (Lib/test/test_asyncio/test_eager_task_factory.py,
// EagerTaskFactoryLoopTests) or says that it has none.

#include "co_assert.hpp"

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Runs `body` as the main task of a loop with eager tasks on, then closes it.
template <class T>
T run_eager(simul::task<T> body) {
  simul::event_loop loop;
  loop.set_eager_tasks(true);
  if constexpr (std::is_void_v<T>) {
    loop.run_until_complete(std::move(body));
    loop.close();
  } else {
    T out = loop.run_until_complete(std::move(body));
    loop.close();
    return out;
  }
}

simul::task<std::string> hello() { co_return "hello"; }

simul::task<std::string> blocks() {
  co_await simul::sleep(1ms);
  co_return "finished after blocking";
}

} // namespace

// test_eager_task_factory_set
TEST(EagerTasks, LoopSwitchIsOffByDefaultAndCanBeSet) {
  simul::event_loop loop;
  EXPECT_FALSE(loop.get_eager_tasks());
  loop.set_eager_tasks(true);
  EXPECT_TRUE(loop.get_eager_tasks());
  loop.close();
}

// test_eager_completion
TEST(EagerTasks, TaskThatNeverSuspendsIsDoneWhenCreateTaskReturns) {
  auto result = run_eager([]() -> simul::task<std::string> {
    auto t = simul::create_task(hello());
    EXPECT_TRUE(t.done());
    co_return co_await t;
  }());
  EXPECT_EQ(result, "hello");
}

// test_await_future_during_eager_step
TEST(EagerTasks, EagerStepCompletesWhatTheCreatorAwaits) {
  auto result = run_eager([]() -> simul::task<int> {
    simul::promise<int> p;
    auto f = p.get_future();
    auto setter = [](simul::promise<int> q) -> simul::task<void> {
      q.set_value(17);
      co_return;
    };
    auto t = simul::create_task(setter(std::move(p)));
    EXPECT_TRUE(t.done());
    co_return co_await f;
  }());
  EXPECT_EQ(result, 17);
}

// test_block_after_eager_step
TEST(EagerTasks, TaskThatSuspendsIsPendingThenFinishesOnTheLoop) {
  auto result = run_eager([]() -> simul::task<std::string> {
    auto t = simul::create_task(blocks());
    EXPECT_FALSE(t.done());
    auto r = co_await t;
    EXPECT_TRUE(t.done());
    co_return r;
  }());
  EXPECT_EQ(result, "finished after blocking");
}

// test_cancellation_after_eager_completion
TEST(EagerTasks, CancellingATaskThatFinishedEagerlyDoesNothing) {
  auto result = run_eager([]() -> simul::task<std::string> {
    auto t = simul::create_task(hello());
    EXPECT_FALSE(t.cancel());
    auto r = co_await t;
    EXPECT_FALSE(t.cancelled());
    co_return r;
  }());
  EXPECT_EQ(result, "hello");
}

// test_cancellation_after_eager_step_blocks
TEST(EagerTasks, CancellingAfterTheEagerStepBlockedCancelsWithTheMessage) {
  try {
    run_eager([]() -> simul::task<void> {
      auto t = simul::create_task(blocks());
      t.cancel("cancellation message");
      EXPECT_GT(t.cancelling(), 0);
      co_await t;
    }());
    ADD_FAILURE() << "the awaited task was not cancelled";
  } catch (const simul::cancelled_error& e) {
    EXPECT_STREQ(e.what(), "cancellation message");
  }
}

// No CPython test of its own (test_tasks' eager variants check it through
// Task.__eager_start): a task that raises in its eager step is done, failed,
// and gives the error to whoever awaits it; create_task itself does not throw.
TEST(EagerTasks, TaskThatRaisesEagerlyIsDoneWithTheError) {
  run_eager([]() -> simul::task<void> {
    auto boom = []() -> simul::task<int> {
      throw std::runtime_error("boom");
      co_return 0;
    };
    auto t = simul::create_task(boom());
    CO_ASSERT_TRUE(t.done());
    CO_ASSERT_FALSE(t.cancelled());
    CO_ASSERT_TRUE(t.exception() != nullptr);
    try {
      co_await t;
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "boom");
    }
  }());
}

// test_current_task
TEST(EagerTasks, CurrentTaskInTheEagerStepIsTheNewTaskAndTheCreatorAfter) {
  run_eager([]() -> simul::task<void> {
    simul::basic_task_handle seen;
    simul::basic_task_handle seen_after_blocking;
    auto child = [](simul::basic_task_handle* a, simul::basic_task_handle* b) -> simul::task<void> {
      *a = simul::current_task();
      co_await simul::sleep(1ms);
      *b = simul::current_task();
    };
    auto me = simul::current_task();
    auto t = simul::create_task(child(&seen, &seen_after_blocking));
    EXPECT_TRUE(seen == t);
    EXPECT_TRUE(simul::current_task() == me);
    co_await t;
    EXPECT_TRUE(seen_after_blocking == t);
  }());
}

// test_all_tasks_with_eager_completion and test_all_tasks_with_blocking
TEST(EagerTasks, AllTasksListsTheEagerTaskWhileItIsPendingOnly) {
  run_eager([]() -> simul::task<void> {
    bool listed_during_step = false;
    auto quick = [](bool* listed) -> simul::task<void> {
      const auto me = simul::current_task();
      for (const auto& t : simul::all_tasks()) {
        *listed = *listed || t == me;
      }
      co_return;
    };
    auto t = simul::create_task(quick(&listed_during_step));
    EXPECT_TRUE(listed_during_step);
    for (const auto& other : simul::all_tasks()) {
      EXPECT_FALSE(other == t);
    }
    simul::event go;
    auto waits = [](simul::event* e) -> simul::task<void> { co_await e->wait(); };
    auto blocked = simul::create_task(waits(&go));
    bool listed = false;
    for (const auto& other : simul::all_tasks()) {
      listed = listed || other == blocked;
    }
    EXPECT_TRUE(listed);
    go.set();
    co_await blocked;
  }());
}

// test_context_vars
TEST(EagerTasks, EagerPartSeesACopyOfTheCreatorsContext) {
  static simul::context_var<int> cv("cv", 0);
  run_eager([]() -> simul::task<void> {
    bool first_step_ran = false;
    bool second_step_ran = false;
    auto coro = [](bool* first, bool* second) -> simul::task<void> {
      EXPECT_EQ(cv.get(), 1);
      cv.set(2);
      *first = true;
      co_await simul::sleep(1ms);
      EXPECT_EQ(cv.get(), 2);
      cv.set(3);
      *second = true;
    };
    cv.set(1);
    auto t = simul::create_task(coro(&first_step_ran, &second_step_ran));
    EXPECT_TRUE(first_step_ran);
    EXPECT_FALSE(second_step_ran);
    EXPECT_EQ(cv.get(), 1);
    co_await t;
    EXPECT_TRUE(second_step_ran);
    EXPECT_EQ(cv.get(), 1);
  }());
}

// No CPython test of its own (Task.__init__ sets the name before
// __eager_start): the name and the creation place are set before the eager
// step runs.
TEST(EagerTasks, NameAndCreationPlaceAreSetBeforeTheEagerStep) {
  run_eager([]() -> simul::task<void> {
    std::string name_inside;
    auto coro = [](std::string* out) -> simul::task<void> {
      *out = simul::current_task().get_name();
      co_return;
    };
    const auto line = __LINE__ + 1;
    auto t = simul::create_task(coro(&name_inside), {.name = "eager-one"});
    EXPECT_EQ(name_inside, "eager-one");
    EXPECT_EQ(t.get_name(), "eager-one");
    EXPECT_EQ(t.base().where().line(), static_cast<std::uint_least32_t>(line));
    co_return;
  }());
}

// No CPython test of its own (asyncio's eager start orders the same way):
// the eager part runs before create_task returns; without eagerness, after
// the creator's next suspension.
TEST(EagerTasks, OrderingPerTaskOptionAndLoopSwitch) {
  auto order_with = [](bool loop_switch, std::optional<bool> option) {
    simul::event_loop loop;
    loop.set_eager_tasks(loop_switch);
    std::vector<std::string> order;
    loop.run_until_complete([](std::vector<std::string>* out, std::optional<bool> opt) -> simul::task<void> {
      auto child = [](std::vector<std::string>* o) -> simul::task<void> {
        o->push_back("child starts");
        co_await simul::yield_now();
        o->push_back("child resumes");
      };
      auto t = simul::create_task(child(out), {.eager = opt});
      out->push_back("creator goes on");
      co_await t;
    }(&order, option));
    loop.close();
    return order;
  };
  const std::vector<std::string> eager{"child starts", "creator goes on", "child resumes"};
  const std::vector<std::string> lazy{"creator goes on", "child starts", "child resumes"};
  EXPECT_EQ(order_with(false, std::nullopt), lazy);
  EXPECT_EQ(order_with(true, std::nullopt), eager);
  EXPECT_EQ(order_with(false, true), eager);
  EXPECT_EQ(order_with(true, false), lazy);
}

// test_eager_task_factory.py's run_coro note: an eager step is taken only if
// the loop is running. A task created on a loop that is not running is
// scheduled as usual.
TEST(EagerTasks, NotRunningLoopSchedulesTheTask) {
  simul::event_loop loop;
  loop.set_eager_tasks(true);
  auto t = loop.create_task(hello(), {.eager = true});
  EXPECT_FALSE(t.done());
  EXPECT_EQ(loop.run_until_complete(t), "hello");
  loop.close();
}

// The braced options inside a co_await expression (g++ 12 trap with
// aggregate temporaries): clean under ASan.
TEST(EagerTasks, BracedOptionsInsideCoAwaitAreSafe) {
  auto result = run_eager([]() -> simul::task<std::string> {
    std::string name = "braced";
    co_return co_await simul::create_task(blocks(), {.name = name, .eager = true});
  }());
  EXPECT_EQ(result, "finished after blocking");
}

// CPython's TaskGroup.create_task looks at a task that finished eagerly at
// once (test_taskgroup's eager variants): the group counts it as done, and
// an eager failure aborts the group before the body goes on.
TEST(EagerTasks, TaskGroupJoinsATaskThatFinishedEagerly) {
  auto result = run_eager([]() -> simul::task<std::string> {
    simul::task_group tg;
    auto t = tg.create_task(hello());
    EXPECT_TRUE(t.done());
    co_await tg.join();
    co_return co_await t;
  }());
  EXPECT_EQ(result, "hello");
}

TEST(EagerTasks, TaskGroupAbortsOnATaskThatFailedEagerly) {
  bool sibling_cancelled = false;
  run_eager([](bool* cancelled) -> simul::task<void> {
    simul::task_group tg;
    auto sibling = tg.create_task(blocks(), {.eager = false});
    tg.create_task([]() -> simul::task<std::string> {
      throw std::runtime_error("eager boom");
      co_return "";
    }());
    EXPECT_TRUE(sibling.cancelling() > 0 || sibling.done());
    try {
      co_await tg.join();
      ADD_FAILURE() << "join should throw";
    } catch (const simul::exception_group& g) {
      EXPECT_EQ(g.exceptions().size(), 1U);
    }
    *cancelled = sibling.cancelled();
  }(&sibling_cancelled));
  EXPECT_TRUE(sibling_cancelled);
}

TEST(EagerTasks, TaskGroupCreateTaskTakesOptions) {
  std::vector<std::string> order;
  simul::event_loop loop;
  loop.run_until_complete([](std::vector<std::string>* out) -> simul::task<void> {
    simul::task_group tg;
    auto child = [](std::vector<std::string>* o) -> simul::task<void> {
      o->push_back("child starts");
      co_return;
    };
    auto t = tg.create_task(child(out), {.name = "eager-child", .eager = true});
    out->push_back("body goes on");
    EXPECT_EQ(t.get_name(), "eager-child");
    co_await tg.join();
  }(&order));
  loop.close();
  EXPECT_EQ(order, (std::vector<std::string>{"child starts", "body goes on"}));
}
