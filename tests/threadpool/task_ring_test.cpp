// The pool's block deque, against std::deque as a model, across many block
// boundaries and with every mix of pushes and pops at both ends.

#include "../../threadpool/src/task_ring.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <random>

namespace {

using simul::detail::pool_task;
using simul::detail::task_action;
using simul::detail::task_outcome;

// A task that writes its number to `out` when run.
pool_task numbered(int n, int* out) {
  return pool_task([n, out](task_action, const std::exception_ptr*) {
    *out = n;
    return task_outcome::completed;
  });
}

} // namespace

TEST(TaskRing, BehavesLikeADequeAcrossBlocks) {
  simul::detail::task_ring ring;
  std::deque<int> model;
  std::mt19937 rng(7);
  int seen = -1;
  int next = 0;
  for (int step = 0; step < 200'000; ++step) {
    const auto dice = rng() % 10;
    // Phases of growth and shrinkage so the ring crosses many blocks.
    const bool growing = (step / 5000) % 2 == 0;
    if (model.empty() || (growing ? dice < 6 : dice < 3)) {
      ring.push_back(numbered(next, &seen));
      model.push_back(next++);
    } else if (dice % 2 == 0) {
      auto task = ring.pop_back();
      (void)task(task_action::run, nullptr);
      ASSERT_EQ(seen, model.back());
      model.pop_back();
    } else {
      auto task = ring.pop_front();
      (void)task(task_action::run, nullptr);
      ASSERT_EQ(seen, model.front());
      model.pop_front();
    }
    ASSERT_EQ(ring.size(), model.size());
  }
}

TEST(TaskRing, DestroysWhatIsLeftExactlyOnce) {
  auto alive = std::make_shared<int>(0);
  {
    simul::detail::task_ring ring;
    for (int i = 0; i < 1000; ++i) {
      ring.push_back(pool_task([alive](task_action, const std::exception_ptr*) { return task_outcome::completed; }));
    }
    for (int i = 0; i < 300; ++i) {
      (void)ring.pop_front();
    }
    EXPECT_EQ(alive.use_count(), 701);
  }
  EXPECT_EQ(alive.use_count(), 1);
}
