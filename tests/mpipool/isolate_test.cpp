// mpi_pool with isolate: crashes and timeouts fail one task, the rank goes
// on; plus the loop bridge and the idle pool's CPU use.

#include <simul/loop.hpp>
#include <simul/mpipool.hpp>

#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

int crash(int code) {
  if (code == 0) {
    std::signal(SIGSEGV, SIG_DFL); // a real crash, not ASan's report of one
    std::raise(SIGSEGV);
  }
  std::_Exit(code);
}
int local_pid() { return static_cast<int>(::getpid()); }
int add_one(int x) { return x + 1; }
int nap_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

// In the local worker: fresh mapped bytes while a 40 MiB block is alive.
[[maybe_unused]] std::uint64_t mapped_for_40_mib() {
  const auto before = ::mallinfo2().hblkhd;
  std::vector<char> block(std::size_t{40} << 20, 1);
  const auto after = ::mallinfo2().hblkhd;
  return static_cast<std::uint64_t>(after - before) + (block.back() == 1 ? 0 : 1);
}

TEST(MpiPoolIsolate, KeepWorkerHeapReachesTheLocalWorkers) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizers' allocators ignore mallopt and do not report mallinfo2";
#else
  {
    simul::mpi_pool plain({.isolate = true, .keep_ranks = true});
    EXPECT_GE(plain.submit(mapped_for_40_mib).get(), std::uint64_t{40} << 20);
  }
  simul::mpi_pool keeping({.isolate = true, .keep_ranks = true, .keep_worker_heap = true});
  EXPECT_EQ(keeping.submit(mapped_for_40_mib).get(), 0U);
  EXPECT_EQ(keeping.submit(mapped_for_40_mib).get(), 0U);
#endif
}

int code_naming_here() { return static_cast<int>(simul::detail::worker_code_naming()); }

TEST(MpiPoolIsolate, TheLocalWorkerReadsRank0sPlainFunctionsAsExecutableOffsets) {
  simul::mpi_pool pool({.isolate = true, .keep_ranks = true});
  EXPECT_EQ(pool.submit(code_naming_here).get(), static_cast<int>(simul::detail::code_naming::executable));
  EXPECT_EQ(pool.submit(add_one, 41).get(), 42);
}

TEST(MpiPoolIsolate, ASegfaultFailsOnlyItsTaskAndTheRankKeepsServing) {
  simul::mpi_pool pool({.isolate = true, .keep_ranks = true});
  auto before = pool.submit(add_one, 1);
  auto crashed = pool.submit(crash, 0);
  try {
    (void)crashed.get();
    FAIL() << "no exception";
  } catch (const simul::mpi_worker_crashed& e) {
    EXPECT_EQ(e.signal(), SIGSEGV);
    EXPECT_TRUE(e.rank() == 1 || e.rank() == 2);
    EXPECT_NE(std::string(e.what()).find("on rank " + std::to_string(e.rank())), std::string::npos) << e.what();
  }
  try {
    (void)pool.submit(crash, 7).get();
    FAIL() << "no exception";
  } catch (const simul::worker_crashed& e) { // process_pool's type catches it too
    EXPECT_EQ(e.exit_code(), 7);
  }
  EXPECT_EQ(before.get(), 2);
  std::vector<simul::future<int>> after;
  for (int i = 0; i < 10; ++i) {
    after.push_back(pool.submit(add_one, i));
  }
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(after[static_cast<std::size_t>(i)].get(), i + 1);
  }
  EXPECT_EQ(pool.stats().crashed, 2U);
}

TEST(MpiPoolIsolate, ATaskPastItsTimeoutFailsWithTimeoutError) {
  simul::mpi_pool pool({.isolate = true, .task_timeout = 200ms, .keep_ranks = true});
  EXPECT_THROW((void)pool.submit(nap_ms, 10'000).get(), simul::timeout_error);
  // A task's own limit overrides the pool's, both ways.
  EXPECT_EQ(pool.submit(simul::task_options{.timeout = 5s}, nap_ms, 300).get(), 300);
  EXPECT_THROW((void)pool.submit(simul::task_options{.timeout = 50ms}, nap_ms, 10'000).get(), simul::timeout_error);
  EXPECT_EQ(pool.submit(add_one, 41).get(), 42);
  EXPECT_EQ(pool.stats().timed_out, 2U);
}

TEST(MpiPoolIsolate, ExceptionsAndMapWorkAsWithoutIsolate) {
  simul::mpi_pool pool({.isolate = true, .isolate_workers = 2, .keep_ranks = true});
  auto thrower = [](int x) -> int {
    if (x == 3) {
      throw std::out_of_range("three");
    }
    return x;
  };
  try {
    (void)pool.submit(thrower, 3).get();
    FAIL() << "no exception";
  } catch (const simul::mpi_remote_error& e) {
    EXPECT_EQ(e.type_name(), "std::out_of_range");
    EXPECT_EQ(e.message(), "three");
  }
  EXPECT_EQ(pool.map(add_one, std::vector<int>{1, 2, 3}, {.chunksize = 2}), (std::vector<int>{2, 3, 4}));
  // The task ran in a local worker process, not in the rank itself.
  const int pid = pool.submit(local_pid).get();
  EXPECT_NE(pid, static_cast<int>(::getpid()));
}

TEST(MpiPoolLoop, AFutureIsAwaitedInsideALoopTask) {
  simul::mpi_pool pool({.keep_ranks = true});
  auto main = [&pool]() -> simul::task<int> {
    auto f = pool.submit(add_one, 9);
    const int first = co_await f;
    auto g = pool.submit(add_one, first);
    const int second = co_await g;
    co_return second;
  };
  EXPECT_EQ(simul::run(main()), 11);
}

// CPU seconds a process has used (user + system), from /proc.
double cpu_seconds(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  long ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) {
      ticks += std::stol(field);
    }
  }
  return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

TEST(MpiPoolIdle, AnIdlePoolDoesNotSpinOnAnyRank) {
  simul::mpi_pool pool({.keep_ranks = true});
  std::set<int> pids{static_cast<int>(::getpid())};
  std::vector<simul::future<int>> running; // all at once: every worker rank gets some
  for (int i = 0; i < 20; ++i) {
    running.push_back(pool.submit([] {
      std::this_thread::sleep_for(5ms);
      return static_cast<int>(::getpid());
    }));
  }
  for (auto& f : running) {
    pids.insert(f.get());
  }
  ASSERT_EQ(pids.size(), 3U);
  std::this_thread::sleep_for(200ms); // past every backoff's spinning phase
  std::vector<double> before;
  for (int pid : pids) {
    before.push_back(cpu_seconds(pid));
  }
  std::this_thread::sleep_for(1500ms);
  std::size_t i = 0;
  for (int pid : pids) {
    const double used = cpu_seconds(pid) - before[i++];
    std::printf("idle: pid %d used %.3f s of CPU in 1.5 s\n", pid, used);
    // A busy-polling rank would use ~1.5 s here; a generous bound, not a benchmark.
    EXPECT_LT(used, 0.15) << "pid " << pid << " used " << used << " s of CPU while idle";
  }
}

} // namespace
