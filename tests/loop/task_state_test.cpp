// A scheduled task's state lives in front of its coroutine frame, in one
// block (task.hpp, frame_header): the frame goes when the task completes, the
// block when the last handle goes. These tests hold that layout to the task's
// contract: parameters released at completion, results and errors kept after
// the frame is gone, the rarely used parts (names, cancel messages, many done
// callbacks) and the list of unretrieved errors, which reuses the pending
// list's links.

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

simul::task<int> hold(std::shared_ptr<int> p) {
  co_await simul::yield_now();
  co_return *p + 1;
}

simul::task<std::unique_ptr<std::string>> make_text(std::string s) {
  co_await simul::yield_now();
  co_return std::make_unique<std::string>(std::move(s));
}

simul::task<void> fail_after(int yields, std::string message) {
  for (int i = 0; i < yields; ++i) {
    co_await simul::yield_now();
  }
  throw std::runtime_error(message);
}

// A frame over the pool's largest block (1 KiB): it comes from operator new,
// state and all.
simul::task<int> big_frame(int seed) {
  std::array<int, 600> values{};
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = seed + static_cast<int>(i);
  }
  co_await simul::yield_now();
  int sum = 0;
  for (int v : values) {
    sum += v;
  }
  co_return sum;
}

} // namespace

TEST(TaskState, ParametersAreReleasedWhenTheTaskCompletesWhileItsHandleLives) {
  auto shared = std::make_shared<int>(41);
  simul::event_loop loop;
  auto h = loop.create_task(hold(shared));
  EXPECT_EQ(shared.use_count(), 2); // the frame's copy
  loop.run_until_complete(h);
  EXPECT_TRUE(h.done());
  EXPECT_EQ(shared.use_count(), 1) << "the frame (and its parameters) must go when the task completes";
  EXPECT_EQ(h.result(), 42);
  EXPECT_EQ(h.result(), 42); // kept in the state, after the frame
}

TEST(TaskState, AMoveOnlyResultOutlivesTheFrameAndMovesOutOnce) {
  simul::event_loop loop;
  auto h = loop.create_task(make_text("kept"));
  auto value = loop.run_until_complete(h); // moves the value out of the state
  ASSERT_TRUE(value);
  EXPECT_EQ(*value, "kept");
  EXPECT_THROW(h.result(), simul::invalid_state_error);
}

TEST(TaskState, ATaskCancelledBeforeItsFirstStepDropsItsFrameThenItsBlock) {
  auto shared = std::make_shared<int>(1);
  simul::event_loop loop;
  auto h = loop.create_task(hold(shared), "early");
  EXPECT_TRUE(h.cancel("not wanted"));
  EXPECT_THROW(loop.run_until_complete(h), simul::cancelled_error);
  EXPECT_TRUE(h.cancelled());
  EXPECT_EQ(shared.use_count(), 1);
  EXPECT_EQ(h.get_name(), "early");
  try {
    h.result();
    ADD_FAILURE() << "result() of a cancelled task must throw";
  } catch (const simul::cancelled_error& e) {
    EXPECT_STREQ(e.what(), "not wanted");
  }
}

TEST(TaskState, NamesCancelMessagesAndManyDoneCallbacks) {
  simul::event_loop loop;
  std::vector<int> order;
  auto sleeper = []() -> simul::task<void> { co_await simul::sleep(1h); };
  auto h = loop.create_task(sleeper(), "sleeper");
  EXPECT_EQ(h.get_name(), "sleeper");
  h.set_name("renamed");
  EXPECT_EQ(h.get_name(), "renamed");
  for (int i = 0; i < 40; ++i) {
    h.add_done_callback([&order, i] { order.push_back(i); });
  }
  loop.call_soon([&] { h.cancel("enough"); });
  EXPECT_THROW(loop.run_until_complete(h), simul::cancelled_error);
  loop.run_once(); // the callbacks were scheduled with call_soon at completion
  ASSERT_EQ(order.size(), 40u);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  try {
    std::rethrow_exception(h.exception());
  } catch (const simul::cancelled_error& e) {
    EXPECT_STREQ(e.what(), "enough");
  } catch (...) {
    ADD_FAILURE() << "a cancelled task's exception() must throw cancelled_error";
  }
}

TEST(TaskState, UnretrievedErrorsAreReportedOnceEachEvenWhenOthersAreRetrievedInBetween) {
  std::vector<std::string> reported;
  {
    simul::event_loop loop;
    loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context& ctx) {
      if (ctx.message == "Task exception was never retrieved") {
        reported.push_back(ctx.task);
      }
    });
    std::vector<simul::task_handle<void>> failing;
    for (int i = 0; i < 6; ++i) {
      // Appended, not "literal" + string: g++ 12 warns falsely (-Wrestrict) on that at -O2.
      std::string message = "boom ";
      message += std::to_string(i);
      std::string name = "f";
      name += std::to_string(i);
      failing.push_back(loop.create_task(fail_after(i % 3, std::move(message)), std::move(name)));
    }
    auto waiter = [](simul::basic_task_handle* last) -> simul::task<int> {
      // Tasks still pending while the failed ones sit in the error list: the
      // two lists share their links, all_tasks must see only these.
      auto a = simul::create_task([]() -> simul::task<void> { co_await simul::sleep(1h); }());
      auto b = simul::create_task([]() -> simul::task<void> { co_await simul::sleep(1h); }());
      while (!last->done()) {
        co_await simul::yield_now();
      }
      co_await simul::yield_now();
      const auto pending = simul::all_tasks();
      int count = static_cast<int>(pending.size());
      a.cancel();
      b.cancel();
      co_return count;
    };
    simul::basic_task_handle last = failing.back();
    // main, a and b are pending; the six failed ones are not.
    EXPECT_EQ(loop.run_until_complete(waiter(&last)), 3);
    for (auto& h : failing) {
      ASSERT_TRUE(h.done());
    }
    // Retrieve the errors of f1 and f4 (the middle of the list, both ways).
    EXPECT_TRUE(failing[1].exception());
    EXPECT_TRUE(failing[4].exception());
    failing.clear();
    last = simul::basic_task_handle(); // f5's last handle: reported through the handler
    loop.close();
  }
  std::sort(reported.begin(), reported.end());
  EXPECT_EQ(reported, (std::vector<std::string>{"f0", "f2", "f3", "f5"}));
}

TEST(TaskState, AnUnretrievedErrorOutlivingTheLoopIsStillReported) {
  testing::internal::CaptureStderr();
  {
    simul::task_handle<void> kept;
    {
      simul::event_loop loop;
      kept = loop.create_task(fail_after(1, "late"), "survivor");
      loop.run_until_complete([](simul::task_handle<void>* h) -> simul::task<void> {
        while (!h->done()) {
          co_await simul::yield_now();
        }
      }(&kept));
      loop.close();
    }
    // The loop is gone; dropping the last handle reports to stderr.
  }
  const auto err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("Task exception was never retrieved"), std::string::npos) << err;
  EXPECT_NE(err.find("survivor"), std::string::npos) << err;
}

TEST(TaskState, AFrameLargerThanThePoolsBlocksWorksScheduledOrNot) {
  simul::event_loop loop;
  std::vector<simul::task_handle<int>> hs;
  for (int i = 0; i < 20; ++i) {
    hs.push_back(loop.create_task(big_frame(i)));
  }
  {
    auto unscheduled = big_frame(7); // destroyed without running
  }
  auto all = loop.run_until_complete(simul::gather(std::move(hs)));
  ASSERT_EQ(all.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(all[static_cast<std::size_t>(i)], 600 * i + 599 * 600 / 2);
  }
}

TEST(TaskState, ManyTasksReuseTheirBlocksAcrossLoops) {
  for (int round = 0; round < 3; ++round) {
    simul::event_loop loop;
    std::vector<simul::task_handle<int>> hs;
    std::vector<std::shared_ptr<int>> values;
    for (int i = 0; i < 2000; ++i) {
      values.push_back(std::make_shared<int>(i));
      hs.push_back(loop.create_task(hold(values.back())));
    }
    auto all = loop.run_until_complete(simul::gather(std::move(hs)));
    for (int i = 0; i < 2000; ++i) {
      ASSERT_EQ(all[static_cast<std::size_t>(i)], i + 1);
      ASSERT_EQ(values[static_cast<std::size_t>(i)].use_count(), 1);
    }
  }
}
