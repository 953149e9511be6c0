#include <simul/core/map.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <list>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// An executor that runs each task on a thread of its own, in reverse order of
/// submission, to show that map's order comes from the input, not completion.
class reversing_executor {
 public:
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) {
    auto task = std::make_shared<simul::promise<simul::submit_result_t<F, Args...>>>();
    auto result = task->get_future();
    m_work.push_back([task, fn = std::decay_t<F>(f), ... a = std::decay_t<Args>(args)]() mutable {
      if (task->set_running_or_notify_cancel()) {
        simul::detail::fulfil(*task, fn, std::move(a)...);
      }
    });
    ++submitted;
    return result;
  }
  void run_all() {
    for (auto it = m_work.rbegin(); it != m_work.rend(); ++it) {
      (*it)();
    }
    m_work.clear();
  }
  void shutdown() {}
  int submitted = 0;

 private:
  std::vector<std::function<void()>> m_work;
};

class own_map_executor : public simul::inline_executor {
 public:
  template <class F, class R>
  std::vector<int> map(F&, R&, simul::map_options options) {
    used_own = true;
    return {static_cast<int>(options.chunksize)};
  }
  bool used_own = false;
};

} // namespace

TEST(Map, ResultsComeInInputOrder) {
  simul::inline_executor ex;
  std::list<int> items{5, 1, 4};
  auto results = simul::map(
      ex, [](int x) { return x * 10; }, items);
  EXPECT_EQ(results, (std::vector<int>{50, 10, 40}));
}

TEST(Map, OrderHoldsWhenCompletionIsReversed) {
  reversing_executor ex;
  std::vector<int> items{1, 2, 3, 4, 5, 6, 7};
  std::thread runner([&] {
    std::this_thread::sleep_for(5ms);
    ex.run_all();
  });
  auto results = simul::map(ex, [](int x) { return x * x; }, items, {.chunksize = 3});
  runner.join();
  EXPECT_EQ(results, (std::vector<int>{1, 4, 9, 16, 25, 36, 49}));
  EXPECT_EQ(ex.submitted, 3);
}

TEST(Map, ChunksizeZeroIsOne) {
  reversing_executor ex;
  std::vector<int> items{1, 2};
  std::thread runner([&] {
    std::this_thread::sleep_for(5ms);
    ex.run_all();
  });
  auto results = simul::map(ex, [](int x) { return x; }, items, {.chunksize = 0});
  runner.join();
  EXPECT_EQ(results.size(), 2U);
  EXPECT_EQ(ex.submitted, 2);
}

TEST(Map, FirstExceptionInInputOrderIsRethrown) {
  simul::inline_executor ex;
  std::vector<int> items{1, 2, 3};
  EXPECT_THROW(simul::map(
                   ex,
                   [](int x) {
                     if (x >= 2) {
                       throw std::range_error("too big");
                     }
                     return x;
                   },
                   items),
               std::range_error);
}

TEST(Map, TimeoutCancelsWhatHasNotStarted) {
  reversing_executor ex; // never runs anything unless asked
  std::vector<int> items{1, 2, 3};
  EXPECT_THROW(simul::map(ex, [](int x) { return x; }, items, {.chunksize = 1, .timeout = 5ms}), simul::timeout_error);
  // The work left behind was cancelled: running it now does nothing.
  ex.run_all();
}

TEST(Map, UsesTheExecutorsOwnMapWhenItHasOne) {
  own_map_executor ex;
  std::vector<int> items{1, 2, 3};
  auto results = simul::map(ex, [](int x) { return x; }, items, {.chunksize = 7});
  EXPECT_TRUE(ex.used_own);
  EXPECT_EQ(results, (std::vector<int>{7}));
}

TEST(Map, EmptyInputGivesEmptyResult) {
  simul::inline_executor ex;
  std::vector<int> none;
  EXPECT_TRUE(simul::map(
                  ex, [](int x) { return x; }, none)
                  .empty());
}
