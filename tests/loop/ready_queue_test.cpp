// The loop's ready queue is a list of 63-item chunks (loop_internal.hpp).
// These tests cross chunk boundaries on every path: FIFO order, one round
// per iteration while items are added behind the round, and close() running
// what is still queued (it lets everything unwind) and releasing it.

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <vector>

TEST(ReadyQueue, ManyCallbacksRunInOrderInOneIterationAcrossChunks) {
  simul::event_loop loop;
  std::vector<int> order;
  for (int i = 0; i < 1000; ++i) {
    loop.call_soon([&order, i] { order.push_back(i); });
  }
  loop.run_once();
  ASSERT_EQ(order.size(), 1000u);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(order[static_cast<std::size_t>(i)], i);
  }
}

TEST(ReadyQueue, WhatARoundSchedulesRunsInTheNextIteration) {
  simul::event_loop loop;
  std::vector<int> order;
  // 150 callbacks, each scheduling one more: a round of 150 with 150 added
  // behind it, the chunks half drained while new ones fill.
  for (int i = 0; i < 150; ++i) {
    loop.call_soon([&loop, &order, i] {
      order.push_back(i);
      loop.call_soon([&order, i] { order.push_back(1000 + i); });
    });
  }
  loop.run_once();
  ASSERT_EQ(order.size(), 150u);
  loop.run_once();
  ASSERT_EQ(order.size(), 300u);
  for (int i = 0; i < 150; ++i) {
    EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
    EXPECT_EQ(order[static_cast<std::size_t>(150 + i)], 1000 + i);
  }
}

TEST(ReadyQueue, YieldingTasksTakeOneStepEachPerIterationInOrder) {
  simul::event_loop loop;
  std::vector<int> steps;
  auto yielder = [](std::vector<int>* out, int id) -> simul::task<void> {
    for (int k = 0; k < 5; ++k) {
      out->push_back(id);
      co_await simul::yield_now();
    }
  };
  std::vector<simul::task_handle<void>> hs;
  for (int id = 0; id < 100; ++id) {
    hs.push_back(loop.create_task(yielder(&steps, id)));
  }
  for (int round = 0; round < 5; ++round) {
    loop.run_once();
    ASSERT_EQ(steps.size(), static_cast<std::size_t>(100 * (round + 1)));
    for (int id = 0; id < 100; ++id) {
      ASSERT_EQ(steps[static_cast<std::size_t>(100 * round + id)], id) << "round " << round;
    }
  }
  loop.run_until_complete(simul::gather(std::move(hs)));
}

TEST(ReadyQueue, CloseRunsWhatIsQueuedOnceAndReleasesIt) {
  auto token = std::make_shared<int>(0);
  int ran = 0;
  {
    simul::event_loop loop;
    for (int i = 0; i < 200; ++i) {
      loop.call_soon([token, &ran] { ++ran; });
    }
    EXPECT_EQ(token.use_count(), 201);
    loop.close();
    EXPECT_EQ(token.use_count(), 1);
  }
  EXPECT_EQ(ran, 200);
}
