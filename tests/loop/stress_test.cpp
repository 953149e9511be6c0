// Stress: a million tasks through create_task and gather.

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <vector>

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int k_tasks = 100'000; // sanitizers are 5-20x slower; the paths are the same
#else
constexpr int k_tasks = 1'000'000;
#endif

simul::task<long> value(int i) { co_return i; }

} // namespace

TEST(Stress, AMillionTasksCreatedGatheredAndFreed) {
  auto main = []() -> simul::task<long> {
    std::vector<simul::task_handle<long>> hs;
    hs.reserve(k_tasks);
    for (int i = 0; i < k_tasks; ++i) {
      hs.push_back(simul::create_task(value(i)));
    }
    EXPECT_EQ(simul::all_tasks().size(), static_cast<std::size_t>(k_tasks) + 1);
    auto results = co_await simul::gather(std::move(hs));
    long sum = 0;
    for (long v : results) {
      sum += v;
    }
    EXPECT_EQ(simul::all_tasks().size(), 1u);
    co_return sum;
  };
  const long n = k_tasks;
  EXPECT_EQ(simul::run(main()), n * (n - 1) / 2);
}
