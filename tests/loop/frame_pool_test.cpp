// The small-block pool under frames and task states: reuse, sizes, blocks
// freed on other threads and after their thread exited.

#include <simul/loop.hpp>
#include <simul/loop/detail/frame_pool.hpp>

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

using simul::detail::pool_allocate;
using simul::detail::pool_deallocate;

namespace {
/// Gathers the tasks and adds up their results.
simul::task<long> sum_of(std::vector<simul::task<int>> tasks) {
  auto values = co_await simul::gather(std::move(tasks));
  long sum = 0;
  for (int v : values) {
    sum += v;
  }
  co_return sum;
}
} // namespace

TEST(FramePool, BlocksAreAlignedDistinctAndWritable) {
  std::vector<std::pair<void*, std::size_t>> blocks;
  std::set<void*> seen;
  for (std::size_t size : {1u, 15u, 16u, 17u, 80u, 152u, 1000u, 1024u, 1025u, 5000u}) {
    for (int i = 0; i < 100; ++i) {
      void* p = pool_allocate(size);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 16, 0u) << size;
      std::memset(p, 0xab, size);
      EXPECT_TRUE(seen.insert(p).second) << "block handed out twice";
      blocks.emplace_back(p, size);
    }
  }
  for (auto& [p, size] : blocks) {
    pool_deallocate(p, size);
  }
}

TEST(FramePool, BlocksFreedOnAnotherThreadOrAfterItsThreadExitedAreReusable) {
  std::vector<void*> made;
  std::thread maker([&] {
    for (int i = 0; i < 1000; ++i) {
      made.push_back(pool_allocate(48));
    }
  });
  maker.join(); // the maker's thread is gone; its slabs stay valid
  std::thread freer([&] {
    for (void* p : made) {
      std::memset(p, 0, 48);
      pool_deallocate(p, 48);
    }
  });
  freer.join(); // the freer's lists went to the shared spare list
  std::set<void*> again;
  for (int i = 0; i < 1000; ++i) {
    again.insert(pool_allocate(48));
  }
  EXPECT_EQ(again.size(), 1000u);
  for (void* p : again) {
    pool_deallocate(p, 48);
  }
}

TEST(FramePool, TasksMadeOnOneThreadAndRunOnAnotherLoop) {
  auto make = [](int v) -> simul::task<int> { co_return v * 2; };
  std::vector<simul::task<int>> tasks;
  std::thread([&] {
    for (int i = 0; i < 100; ++i) {
      tasks.push_back(make(i));
    }
  }).join();
  EXPECT_EQ(simul::run(sum_of(std::move(tasks))), 9900);
}

TEST(FramePool, AForkedChildCanRunTasksWhileAnotherThreadUsesThePool) {
#if defined(__SANITIZE_ADDRESS__)
  // The pool is off under ASan (blocks come from ASan's allocator), so there
  // is no lock of ours to check, and forking while another thread starts and
  // ends threads only exercises the sanitizer's own fork hazards.
  GTEST_SKIP() << "the frame pool is off under AddressSanitizer";
#elif defined(__SANITIZE_THREAD__)
  // GCC 12's ThreadSanitizer does not hold its own allocator's locks across
  // fork(): a child forked while the churning thread is inside TSan's
  // allocator waits forever for that lock in its first operator new (seen
  // here, under load). The frame pool's own lock is checked in the other
  // builds.
  GTEST_SKIP() << "ThreadSanitizer's allocator is not fork-safe while other threads allocate";
#endif
  std::atomic<bool> stop{false};
  std::thread churn([&] { // takes and gives back the spare list's lock
    while (!stop.load()) {
      std::vector<void*> blocks;
      std::thread([&] {
        for (int i = 0; i < 64; ++i) {
          blocks.push_back(pool_allocate(96));
        }
      }).join();
      for (void* p : blocks) {
        pool_deallocate(p, 96);
      }
    }
  });
  for (int round = 0; round < 5; ++round) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto work = [](int v) -> simul::task<int> { co_return v + 1; };
      std::vector<simul::task<int>> ts;
      for (int i = 0; i < 100; ++i) {
        ts.push_back(work(i));
      }
      std::_Exit(simul::run(sum_of(std::move(ts))) == 5050 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  stop = true;
  churn.join();
}
