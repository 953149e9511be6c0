#include <simul/core/map.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// An executor that only queues its tasks; `run_all_when(n)` runs them in
/// reverse order of submission once n are queued, to show that map's order
/// comes from the input, not from completion.
class reversing_executor {
 public:
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) {
    auto task = std::make_shared<simul::promise<simul::submit_result_t<F, Args...>>>();
    auto result = task->get_future();
    std::lock_guard lock(m_mutex);
    m_work.push_back([task, fn = std::decay_t<F>(f), ... a = std::decay_t<Args>(args)]() mutable {
      if (task->set_running_or_notify_cancel()) {
        simul::detail::fulfil(*task, fn, std::move(a)...);
      }
    });
    ++m_submitted;
    return result;
  }
  void run_all_when(int count) {
    while (m_submitted.load() < count) {
      std::this_thread::yield();
    }
    std::vector<std::function<void()>> work;
    {
      std::lock_guard lock(m_mutex);
      work.swap(m_work);
    }
    for (auto it = work.rbegin(); it != work.rend(); ++it) {
      (*it)();
    }
  }
  void shutdown() {}
  int submitted() const { return m_submitted.load(); }

 private:
  std::mutex m_mutex;
  std::vector<std::function<void()>> m_work;
  std::atomic<int> m_submitted{0};
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
  std::thread runner([&] { ex.run_all_when(3); });
  auto results = simul::map(ex, [](int x) { return x * x; }, items, {.chunksize = 3});
  runner.join();
  EXPECT_EQ(results, (std::vector<int>{1, 4, 9, 16, 25, 36, 49}));
  EXPECT_EQ(ex.submitted(), 3);
}

TEST(Map, ChunksizeZeroIsOne) {
  reversing_executor ex;
  std::vector<int> items{1, 2};
  std::thread runner([&] { ex.run_all_when(2); });
  auto results = simul::map(ex, [](int x) { return x; }, items, {.chunksize = 0});
  runner.join();
  EXPECT_EQ(results.size(), 2U);
  EXPECT_EQ(ex.submitted(), 2);
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
  static std::atomic<int> runs{0};
  EXPECT_THROW(simul::map(ex, [](int x) { return runs += x; }, items, {.chunksize = 1, .timeout = 5ms}),
               simul::timeout_error);
  // The work left behind was cancelled: running it now does nothing.
  ex.run_all_when(3);
  EXPECT_EQ(runs.load(), 0);
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
