#include <simul/core/wait.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <list>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct batch {
  std::vector<simul::promise<int>> promises;
  std::vector<simul::future<int>> futures;
  explicit batch(int n) : promises(n) {
    for (auto& p : promises) {
      futures.push_back(p.get_future());
    }
  }
};

} // namespace

TEST(Wait, AllCompletedReturnsEverythingDone) {
  batch b(3);
  std::thread producer([&] {
    for (int i = 0; i < 3; ++i) {
      b.promises[i].set_value(i);
    }
  });
  auto [done, not_done] = simul::wait(b.futures);
  producer.join();
  EXPECT_EQ(done.size(), 3U);
  EXPECT_TRUE(not_done.empty());
  EXPECT_EQ(done[0], &b.futures[0]);
}

TEST(Wait, FirstCompletedReturnsAsSoonAsOneIsReady) {
  batch b(3);
  std::thread producer([&] {
    std::this_thread::sleep_for(5ms);
    b.promises[1].set_value(1);
  });
  auto result = simul::wait(b.futures, simul::return_when::first_completed);
  producer.join();
  ASSERT_EQ(result.done.size(), 1U);
  EXPECT_EQ(result.done[0], &b.futures[1]);
  EXPECT_EQ(result.not_done.size(), 2U);
}

TEST(Wait, FirstExceptionStopsAtTheFailure) {
  batch b(3);
  b.promises[0].set_value(0);
  std::thread producer([&] { b.promises[2].set_exception(std::make_exception_ptr(std::runtime_error("x"))); });
  auto result = simul::wait(b.futures, simul::return_when::first_exception);
  producer.join();
  EXPECT_EQ(result.done.size(), 2U);
  ASSERT_EQ(result.not_done.size(), 1U);
  EXPECT_EQ(result.not_done[0], &b.futures[1]);
}

TEST(Wait, FirstExceptionIgnoresCancellationAndWaitsForAll) {
  batch b(2);
  b.futures[0].cancel();
  std::thread producer([&] {
    std::this_thread::sleep_for(5ms);
    b.promises[1].set_value(1);
  });
  auto result = simul::wait(b.futures, simul::return_when::first_exception);
  producer.join();
  EXPECT_EQ(result.done.size(), 2U);
}

TEST(Wait, FirstExceptionWhenAlreadyFailed) {
  batch b(2);
  b.promises[1].set_exception(std::make_exception_ptr(std::runtime_error("x")));
  auto result = simul::wait(b.futures, simul::return_when::first_exception);
  EXPECT_EQ(result.done.size(), 1U);
}

TEST(Wait, TimeoutLeavesUnfinishedInNotDone) {
  for (auto when :
       {simul::return_when::all_completed, simul::return_when::first_completed, simul::return_when::first_exception}) {
    batch b(2);
    b.promises[0].set_value(0);
    auto result = simul::wait(
        b.futures, when == simul::return_when::first_completed ? simul::return_when::all_completed : when, 10ms);
    ASSERT_EQ(result.done.size(), 1U);
    ASSERT_EQ(result.not_done.size(), 1U);
    EXPECT_EQ(result.not_done[0], &b.futures[1]);
  }
  batch none(2);
  auto result = simul::wait(none.futures, simul::return_when::first_completed, 5ms);
  EXPECT_TRUE(result.done.empty());
  EXPECT_EQ(result.not_done.size(), 2U);
}

TEST(Wait, CallbacksOutliveAnEarlyReturn) {
  auto b = std::make_unique<batch>(2);
  b->promises[0].set_value(0);
  auto promises = std::move(b->promises);
  {
    auto futures = std::move(b->futures);
    auto result = simul::wait(futures, simul::return_when::first_completed);
    EXPECT_EQ(result.done.size(), 1U);
  }
  // The futures are gone; completing the other promise must not touch them.
  promises[1].set_value(1);
}

TEST(Wait, EmptyFutureIsRejected) {
  std::vector<simul::future<int>> futures(1);
  EXPECT_THROW((void)simul::wait(futures), simul::future_error);
  EXPECT_THROW((void)simul::as_completed(futures), simul::future_error);
}

TEST(AsCompleted, YieldsInCompletionOrder) {
  batch b(3);
  b.promises[2].set_value(2); // already done: first
  // The range takes note of what is done when it is made, so it is made
  // before the producer starts: a producer quicker than this thread would
  // otherwise finish 0 first and make it "already done" too (yielded in
  // input order, before 2).
  auto completed = simul::as_completed(b.futures);
  std::thread producer([&] {
    std::this_thread::sleep_for(2ms);
    b.promises[0].set_value(0);
    std::this_thread::sleep_for(2ms);
    b.promises[1].set_value(1);
  });
  std::vector<int> order;
  for (auto& f : completed) {
    order.push_back(f.get());
  }
  producer.join();
  EXPECT_EQ(order, (std::vector<int>{2, 0, 1}));
}

TEST(AsCompleted, TimeoutThrowsNamingTheUnfinished) {
  batch b(3);
  b.promises[0].set_value(0);
  int seen = 0;
  try {
    for (auto& f : simul::as_completed(b.futures, 10ms)) {
      (void)f.get();
      ++seen;
    }
    FAIL() << "as_completed should time out";
  } catch (const simul::timeout_error& e) {
    EXPECT_NE(std::string(e.what()).find("2 future(s)"), std::string::npos) << e.what();
  }
  EXPECT_EQ(seen, 1);
}

TEST(AsCompleted, EmptyRangeYieldsNothing) {
  std::vector<simul::future<int>> none;
  int count = 0;
  for (auto& f : simul::as_completed(none)) {
    (void)f;
    ++count;
  }
  EXPECT_EQ(count, 0);
}

// wait and as_completed take ranges of simul::future only, so overloads for
// other handles (the loop's tasks) never compete with them.
template <class R>
concept core_waitable = requires(R& r) {
  simul::wait(r);
  simul::as_completed(r);
};
static_assert(core_waitable<std::vector<simul::future<int>>>);
static_assert(core_waitable<std::list<simul::future<void>>>);
static_assert(!core_waitable<std::vector<int>>);
static_assert(!core_waitable<std::vector<simul::promise<int>>>);

TEST(Wait, AcceptsOnlyRangesOfFutures) { SUCCEED(); }
