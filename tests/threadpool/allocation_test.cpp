// Counts heap allocations made by the submitting thread: `post` of a small
// callable makes none once the queues are warm, `submit` makes exactly one
// (the future's shared state). The counting operator new replaces the global
// one in this test binary only, and not under the sanitizers, which bring
// their own.

#include <simul/threadpool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define SIMUL_COUNT_ALLOCATIONS 1

namespace {
thread_local bool t_counting = false;
thread_local long t_allocations = 0;
} // namespace

void* operator new(std::size_t size) {
  if (t_counting) {
    ++t_allocations;
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) {
    return p;
  }
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#endif

TEST(ThreadPoolAllocation, SmallCallablesAreStoredInline) {
  int a = 0;
  int b = 0;
  auto small = [&a, &b] { a += b; };
  using post_t = simul::detail::post_task<decltype(small)>;
  static_assert(simul::detail::pool_task::fits_inline<post_t>);
  auto returning = [&a, &b, c = 1L] { return a + b + c; };
  using submit_t = simul::detail::submit_task<long, decltype(returning)>;
  static_assert(simul::detail::pool_task::fits_inline<submit_t>);
  SUCCEED();
}

#ifdef SIMUL_COUNT_ALLOCATIONS
TEST(ThreadPoolAllocation, PostAllocatesNothingAndSubmitOnlyTheSharedState) {
  simul::thread_pool pool({.workers = 2});
  std::atomic<long> count{0};
  for (int i = 0; i < 5'000; ++i) {
    pool.post([&count] { count.fetch_add(1); });
  }
  pool.wait_idle();

  t_counting = true;
  t_allocations = 0;
  for (int i = 0; i < 1'000; ++i) {
    pool.post([&count] { count.fetch_add(1); });
  }
  const long by_post = t_allocations;
  t_counting = false;
  pool.wait_idle();
  EXPECT_EQ(by_post, 0);

  std::vector<simul::future<int>> futures;
  futures.reserve(1'000);
  t_counting = true;
  t_allocations = 0;
  for (int i = 0; i < 1'000; ++i) {
    futures.push_back(pool.submit([i] { return i; }));
  }
  const long by_submit = t_allocations;
  t_counting = false;
  for (auto& f : futures) {
    (void)f.get();
  }
  EXPECT_EQ(by_submit, 1'000);
  EXPECT_EQ(count.load(), 6'000);
}
#endif
