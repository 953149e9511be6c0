// Everything that can go wrong in a worker: it is killed, it crashes, it exits,
// it overruns its timeout, it writes garbage, it crashes in a loop. Each fails
// only its own task, the pool replaces the worker and keeps serving, and no
// process is left behind.

#include <simul/procpool.hpp>

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

int square(int x) { return x * x; }
int my_pid() { return static_cast<int>(::getpid()); }
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int segfault(int) {
  // The default action, so a sanitizer's handler does not turn it into a report.
  ::signal(SIGSEGV, SIG_DFL);
  ::raise(SIGSEGV);
  return 0;
}
int die_abort(int) { std::abort(); }
int die_exit(int code) { ::_exit(code); }

bool alive(int pid) {
  if (::kill(pid, 0) != 0) {
    return errno != ESRCH;
  }
  // A zombie still answers kill(0); it is dead for our purpose only if not ours.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  return close == std::string::npos || text.size() < close + 3 || text[close + 2] != 'Z';
}

/// The process ids whose parent is this process.
std::vector<int> my_children() {
  std::vector<int> out;
  const auto self = ::getpid();
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::ifstream stat(entry.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto close = text.rfind(')');
    if (close == std::string::npos) {
      continue;
    }
    std::istringstream rest(text.substr(close + 2));
    char state = 0;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == self) {
      out.push_back(std::stoi(name));
    }
  }
  return out;
}

template <class F>
bool eventually(F condition, std::chrono::milliseconds limit = 5000ms) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

template <class T>
simul::worker_crashed expect_crash(simul::future<T>& f) {
  try {
    f.get();
  } catch (const simul::worker_crashed& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected worker_crashed, got " << e.what();
  }
  ADD_FAILURE() << "expected worker_crashed, got a value";
  return simul::worker_crashed(0, 0, 0, "");
}

} // namespace

TEST(ProcessPoolCrash, SigkillMidTaskFailsOnlyThatTaskAndTheWorkerIsReplaced) {
  simul::process_pool procs({.workers = 1});
  ASSERT_EQ(procs.submit(square, 1).get(), 1);
  const auto pids = procs.worker_pids();
  ASSERT_EQ(pids.size(), 1U);
  auto victim = procs.submit(sleep_ms, 5000);
  std::vector<simul::future<int>> queued;
  for (int i = 0; i < 10; ++i) {
    queued.push_back(procs.submit(square, i));
  }
  std::this_thread::sleep_for(100ms);
  ASSERT_EQ(::kill(pids[0], SIGKILL), 0);
  auto crash = expect_crash(victim);
  EXPECT_EQ(crash.pid(), pids[0]);
  EXPECT_EQ(crash.signal(), SIGKILL);
  EXPECT_EQ(crash.exit_code(), -1);
  EXPECT_NE(crash.task().find("task"), std::string::npos);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(queued[i].get(), i * i);
  }
  EXPECT_EQ(procs.stats().crashed, 1U);
  // square(0) was sent ahead behind the victim; it went back to the queue and ran.
  EXPECT_EQ(procs.stats().completed, 11U);
  ASSERT_TRUE(eventually([&] { return procs.worker_pids().size() == 1; }));
  EXPECT_NE(procs.worker_pids()[0], pids[0]);
}

TEST(ProcessPoolCrash, SegfaultAbortAndExitEachFailTheirTask) {
  simul::process_pool procs({.workers = 2});
  auto seg = procs.submit(segfault, 0);
  auto abrt = procs.submit(die_abort, 0);
  auto ex = procs.submit(die_exit, 3);
  auto fine = procs.submit(square, 9);
  auto s = expect_crash(seg);
  EXPECT_EQ(s.signal(), SIGSEGV);
  EXPECT_EQ(s.exit_code(), -1);
  auto a = expect_crash(abrt);
  EXPECT_EQ(a.signal(), SIGABRT);
  auto e = expect_crash(ex);
  EXPECT_EQ(e.signal(), 0);
  EXPECT_EQ(e.exit_code(), 3);
  EXPECT_NE(std::string(e.what()).find("exited with status 3"), std::string::npos);
  EXPECT_EQ(fine.get(), 81);
  EXPECT_EQ(procs.submit(square, 4).get(), 16);
  EXPECT_EQ(procs.stats().crashed, 3U);
}

TEST(ProcessPoolCrash, CorruptFrameCountsAsTheWorkersCrash) {
  simul::process_pool procs({.workers = 1});
  auto f = procs.submit([] {
    const char garbage[64] = "this is not a frame header, not at all";
    [[maybe_unused]] auto n = ::write(simul::detail::worker_channel(), garbage, sizeof(garbage));
    std::this_thread::sleep_for(std::chrono::seconds(10));
    return 1;
  });
  auto crash = expect_crash(f);
  EXPECT_EQ(crash.signal(), SIGKILL);
  EXPECT_NE(crash.task().find("corrupt"), std::string::npos) << crash.what();
  EXPECT_EQ(procs.submit(square, 6).get(), 36);
}

TEST(ProcessPoolCrash, AFrameClaimingAHugeSizeCountsAsTheWorkersCrash) {
  simul::process_pool procs({.workers = 1});
  auto f = procs.submit([] {
    // A well-formed header announcing 64 GiB: the parent must not try to allocate it.
    struct {
      std::uint32_t magic = 0x4c4d4953;
      std::uint16_t kind = 10;
      std::uint16_t nfds = 0;
      std::uint64_t id = 1;
      std::uint64_t fn = 0;
      std::uint64_t size = std::uint64_t{64} << 30;
    } header;
    [[maybe_unused]] auto n = ::write(simul::detail::worker_channel(), &header, sizeof(header));
    std::this_thread::sleep_for(std::chrono::seconds(10));
    return 1;
  });
  auto crash = expect_crash(f);
  EXPECT_EQ(crash.signal(), SIGKILL);
  EXPECT_NE(crash.task().find("corrupt"), std::string::npos) << crash.what();
  EXPECT_EQ(procs.submit(square, 8).get(), 64);
}

TEST(ProcessPoolCrash, TruncatedFrameCountsAsTheWorkersCrash) {
  simul::process_pool procs({.workers = 1});
  auto f = procs.submit([] {
    const char half[10] = {'S', 'I', 'M', 'L', 10, 0, 0, 0, 0, 0};
    [[maybe_unused]] auto n = ::write(simul::detail::worker_channel(), half, sizeof(half));
    ::_exit(0);
    return 1;
  });
  auto crash = expect_crash(f);
  EXPECT_EQ(crash.exit_code(), 0);
  EXPECT_EQ(procs.submit(square, 7).get(), 49);
}

TEST(ProcessPoolCrash, ACrashLoopBreaksThePoolWithAClearMessage) {
  simul::process_pool procs({.workers = 2, .restart_limit = 3, .restart_window = 10s});
  std::vector<simul::future<int>> futures;
  for (int i = 0; i < 20; ++i) {
    futures.push_back(procs.submit(die_exit, 1));
  }
  int crashed = 0;
  int broken = 0;
  for (auto& f : futures) {
    try {
      f.get();
    } catch (const simul::worker_crashed&) {
      ++crashed;
    } catch (const simul::broken_executor& e) {
      ++broken;
      EXPECT_NE(std::string(e.what()).find("crash loop"), std::string::npos) << e.what();
    }
  }
  EXPECT_GE(crashed, 4);
  EXPECT_EQ(crashed + broken, 20);
  EXPECT_GT(broken, 0);
  EXPECT_TRUE(procs.is_shutdown());
  EXPECT_THROW((void)procs.submit(square, 1), simul::broken_executor);
}

TEST(ProcessPoolCrash, TaskTimeoutKillsOnlyTheOverdueTask) {
  simul::process_pool procs({.workers = 2, .task_timeout = 300ms});
  auto slow = procs.submit(sleep_ms, 20000);
  auto quick = procs.submit(sleep_ms, 10);
  try {
    slow.get();
    FAIL() << "expected timeout_error";
  } catch (const simul::timeout_error& e) {
    EXPECT_NE(std::string(e.what()).find("300 ms"), std::string::npos) << e.what();
  }
  EXPECT_EQ(quick.get(), 10);
  EXPECT_EQ(procs.submit(square, 5).get(), 25);
  EXPECT_EQ(procs.stats().timed_out, 1U);
  EXPECT_EQ(procs.stats().crashed, 0U);
}

TEST(ProcessPoolCrash, PerSubmitTimeoutOverridesThePools) {
  simul::process_pool procs({.workers = 1, .task_timeout = 100ms});
  // Longer than the pool's default: allowed to finish.
  auto patient = procs.submit(simul::task_options{.timeout = 10s}, sleep_ms, 300);
  EXPECT_EQ(patient.get(), 300);
  // No limit at all.
  auto unlimited = procs.submit(simul::task_options{.timeout = std::chrono::nanoseconds::max()}, sleep_ms, 250);
  EXPECT_EQ(unlimited.get(), 250);
  simul::process_pool unbounded({.workers = 1});
  auto strict = unbounded.submit(simul::task_options{.timeout = 100ms}, sleep_ms, 20000);
  EXPECT_THROW(strict.get(), simul::timeout_error);
  EXPECT_EQ(unbounded.submit(square, 3).get(), 9);
}

class Recycling : public ::testing::TestWithParam<int> {};

TEST_P(Recycling, OneWorkerRecycledEveryNTasksLosesNothing) {
  const int n = GetParam();
  simul::process_pool procs({.workers = 1, .max_tasks_per_child = static_cast<std::size_t>(n)});
  std::vector<simul::future<int>> futures;
  for (int i = 0; i < 12; ++i) {
    futures.push_back(procs.submit(my_pid));
  }
  std::vector<int> pids;
  for (auto& f : futures) {
    ASSERT_TRUE(f.wait_for(20s)) << "recycling stalled the queue";
    pids.push_back(f.get());
  }
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(pids[i], pids[i - i % n]) << "task " << i;
    if (i % n == 0 && i > 0) {
      EXPECT_NE(pids[i], pids[i - 1]);
    }
  }
  EXPECT_EQ(std::set<int>(pids.begin(), pids.end()).size(), static_cast<std::size_t>(12 / n));
  EXPECT_EQ(procs.stats().recycled, static_cast<std::uint64_t>(12 / n));
  EXPECT_EQ(procs.stats().crashed, 0U);
}

INSTANTIATE_TEST_SUITE_P(ProcessPoolCrash, Recycling, ::testing::Values(1, 2));

TEST(ProcessPoolCrash, DestructorIsBoundedAndCompletesEveryFuture) {
  std::vector<simul::future<int>> queued;
  simul::future<int> running;
  simul::future<int> stubborn;
  const auto start = std::chrono::steady_clock::now();
  {
    simul::process_pool procs({.workers = 2, .shutdown_grace = 200ms});
    running = procs.submit(sleep_ms, 30000);
    stubborn = procs.submit([] {
      ::signal(SIGTERM, SIG_IGN); // only SIGKILL will do
      std::this_thread::sleep_for(std::chrono::seconds(30));
      return 1;
    });
    for (int i = 0; i < 5; ++i) {
      queued.push_back(procs.submit(square, i));
    }
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_THROW(running.get(), simul::broken_executor);
  EXPECT_THROW(stubborn.get(), simul::broken_executor);
  for (auto& f : queued) {
    EXPECT_THROW(f.get(), simul::cancelled_error);
  }
}

TEST(ProcessPoolCrash, NoZombieAndNoWorkerOutlivesThePool) {
  std::vector<int> pids;
  int zygote = -1;
  {
    simul::process_pool procs({.workers = 3});
    auto f = procs.submit(segfault, 0); // a dead worker to reap as well
    EXPECT_THROW(f.get(), simul::worker_crashed);
    for (int i = 0; i < 6; ++i) {
      pids.push_back(procs.submit(my_pid).get());
    }
    zygote = procs.zygote_pid();
    EXPECT_EQ(my_children(), std::vector<int>{zygote});
  }
  EXPECT_TRUE(my_children().empty());
  EXPECT_FALSE(alive(zygote));
  for (int pid : pids) {
    EXPECT_FALSE(alive(pid)) << pid;
  }
}

TEST(ProcessPoolCrash, WorkersDieWhenTheParentDies) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t parent = ::fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    ::close(pipe_fds[0]);
    {
      simul::process_pool procs({.workers = 2});
      int pids[3] = {procs.zygote_pid(), procs.submit(my_pid).get(), 0};
      while (procs.worker_pids().size() < 2) {
        std::this_thread::sleep_for(5ms);
      }
      pids[1] = procs.worker_pids()[0];
      pids[2] = procs.worker_pids()[1];
      [[maybe_unused]] auto n = ::write(pipe_fds[1], pids, sizeof(pids));
      ::_exit(0); // dies without destroying the pool
    }
  }
  ::close(pipe_fds[1]);
  int pids[3] = {};
  ASSERT_EQ(::read(pipe_fds[0], pids, sizeof(pids)), static_cast<long>(sizeof(pids)));
  ::close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(parent, &status, 0), parent);
  for (int pid : pids) {
    EXPECT_TRUE(eventually([&] { return !alive(pid); })) << "process " << pid << " outlived its parent";
  }
}

namespace {
int g_initialized = 0;
void init_ok() { g_initialized = 42; }
int read_initialized() { return g_initialized; }
void init_throws() { throw std::runtime_error("no database"); }
} // namespace

TEST(ProcessPoolCrash, InitializerRunsInEveryWorker) {
  simul::process_pool procs({.workers = 2, .initializer = init_ok});
  EXPECT_EQ(procs.submit(read_initialized).get(), 42);
  EXPECT_EQ(g_initialized, 0);
}

TEST(ProcessPoolCrash, AFailingInitializerBreaksThePool) {
  simul::process_pool procs({.workers = 1, .initializer = init_throws});
  try {
    // The pool may learn of the failure before this submit (which then
    // throws) or after (the future does): the same error either way.
    procs.submit(square, 2).get();
    FAIL() << "expected broken_executor";
  } catch (const simul::broken_executor& e) {
    EXPECT_NE(std::string(e.what()).find("no database"), std::string::npos) << e.what();
    ASSERT_TRUE(e.cause());
    EXPECT_THROW(std::rethrow_exception(e.cause()), simul::remote_error);
  }
  EXPECT_THROW((void)procs.submit(square, 2), simul::broken_executor);
}
