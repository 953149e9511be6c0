// The two start methods: the core behaviours run against both, and what only
// an exec'd zygote gives (no inherited lock, its own build check, functions
// named by offset from the executable) against exec.

#include <simul/procpool.hpp>
#include <simul/procpool/detail/testing.hpp>

#include <gtest/gtest.h>

#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::mutex g_program_mutex; // held by a thread of the program while a pool is made
int g_initialized = 0;      // set by the initializer, in workers

int square(int x) { return x * x; }
int take_the_program_mutex(int x) {
  const std::lock_guard<std::mutex> lock(g_program_mutex);
  return x + 1;
}
void initialize() { g_initialized = 42; }
int initialized(int) { return g_initialized; }
bool zygote_variable_set(int) { return std::getenv("SIMUL_PROCPOOL_ZYGOTE") != nullptr; }
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int segfault(int) {
  ::signal(SIGSEGV, SIG_DFL); // the default action: no sanitizer report
  ::raise(SIGSEGV);
  return 0;
}
std::vector<int> reversed(std::vector<int> v) { return {v.rbegin(), v.rend()}; }

// A static initializer of this program that fails in an exec'd zygote when
// a test asks for it (it runs before the library's zygote entry).
constexpr char k_fail_start[] = "SIMUL_TEST_STATIC_INIT_EXITS";
const bool g_start_failed = std::getenv(k_fail_start) != nullptr && (::_exit(9), true);

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

std::string link_target(const std::string& path) {
  char buffer[PATH_MAX];
  const auto n = ::readlink(path.c_str(), buffer, sizeof buffer);
  return n < 0 ? std::string() : std::string(buffer, static_cast<std::size_t>(n));
}

/// No child of this process is left (running or unreaped).
bool no_children_left() {
  errno = 0;
  return ::waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD;
}

class StartMethod : public ::testing::TestWithParam<simul::start_method> {
 protected:
  simul::process_pool_options with(simul::process_pool_options options) const {
    options.start = GetParam();
    return options;
  }
};

std::string name_of(const ::testing::TestParamInfo<simul::start_method>& info) {
  return info.param == simul::start_method::exec ? "exec" : "fork";
}

} // namespace

TEST_P(StartMethod, RunsFunctionsLambdasMapsAndBigPayloadsWithTheInitializer) {
  simul::process_pool procs(with({.workers = 2, .initializer = initialize, .shm_threshold = 4096}));
  EXPECT_EQ(procs.submit(square, 7).get(), 49);
  EXPECT_EQ(procs.submit([](int a, int b) { return a * b; }, 6, 7).get(), 42);
  EXPECT_EQ(procs.submit(initialized, 0).get(), 42);
  EXPECT_EQ(procs.map(square, std::vector<int>{1, 2, 3, 4}, {.chunksize = 2}), (std::vector<int>{1, 4, 9, 16}));
  std::vector<int> big(100000); // 400 kB: through a memfd both ways
  for (int i = 0; i < static_cast<int>(big.size()); ++i) {
    big[static_cast<std::size_t>(i)] = i;
  }
  const auto back = procs.submit(reversed, big).get();
  ASSERT_EQ(back.size(), big.size());
  EXPECT_EQ(back.front(), 99999);
  EXPECT_EQ(back.back(), 0);
}

TEST_P(StartMethod, CrashesTimeoutsRecyclingAndAKilledZygoteBehaveAlike) {
  {
    simul::process_pool procs(with({.workers = 1, .max_tasks_per_child = 2}));
    EXPECT_THROW((void)procs.submit(segfault, 0).get(), simul::worker_crashed);
    EXPECT_THROW((void)procs.submit(simul::task_options{.timeout = 100ms}, sleep_ms, 20000).get(),
                 simul::timeout_error);
    for (int i = 0; i < 4; ++i) { // recycled twice on the way
      EXPECT_EQ(procs.submit(square, i).get(), i * i);
    }
    const auto stats = procs.stats();
    EXPECT_EQ(stats.crashed, 1U);
    EXPECT_EQ(stats.timed_out, 1U);
    EXPECT_GE(stats.recycled, 1U);
    // The zygote dies (the OOM killer, say): the task on the worker fails at once.
    auto running = procs.submit(sleep_ms, 20000);
    std::this_thread::sleep_for(100ms);
    ASSERT_EQ(::kill(procs.zygote_pid(), SIGKILL), 0);
    ASSERT_TRUE(running.wait_for(20s));
    EXPECT_THROW((void)running.get(), simul::broken_executor);
    EXPECT_THROW((void)procs.submit(square, 1), simul::broken_executor);
  }
  EXPECT_TRUE(no_children_left()); // the zygote and every worker reaped
}

INSTANTIATE_TEST_SUITE_P(ProcessPool, StartMethod,
                         ::testing::Values(simul::start_method::fork, simul::start_method::exec), name_of);

namespace {
/// Makes a pool while another thread of the program holds g_program_mutex,
/// then lets that thread release it.
std::unique_ptr<simul::process_pool> pool_made_while_the_mutex_is_held(simul::process_pool_options options) {
  std::mutex m;
  std::condition_variable cv;
  bool locked = false;
  bool pool_made = false;
  std::thread holder([&] {
    const std::lock_guard<std::mutex> program_lock(g_program_mutex);
    std::unique_lock<std::mutex> lock(m);
    locked = true;
    cv.notify_all();
    cv.wait(lock, [&] { return pool_made; });
  });
  std::unique_lock<std::mutex> lock(m);
  cv.wait(lock, [&] { return locked; });
  auto procs = std::make_unique<simul::process_pool>(options);
  pool_made = true;
  cv.notify_all();
  lock.unlock();
  holder.join();
  return procs;
}
} // namespace

TEST(ProcessPoolStartMethod, ALockHeldByAnotherThreadStaysHeldInForkedWorkersOnly) {
  // fork: the zygote is a copy of the program with g_program_mutex locked by
  // a thread it does not have; the task hangs until its timeout.
  auto forked = pool_made_while_the_mutex_is_held({.workers = 1, .task_timeout = 300ms});
  EXPECT_THROW((void)forked->submit(take_the_program_mutex, 1).get(), simul::timeout_error);
  // exec: the zygote starts from the program's static initializers; the mutex is free there.
  auto execd =
      pool_made_while_the_mutex_is_held({.workers = 1, .task_timeout = 5s, .start = simul::start_method::exec});
  EXPECT_EQ(execd->submit(take_the_program_mutex, 1).get(), 2);
}

TEST(ProcessPoolStartMethod, FailedStartsAreClearErrorsTheRightOneLooksLikeTheProgram) {
  simul::detail::forge_build_id_for_tests("build-id:0123456789abcdef");
  try {
    simul::process_pool procs({.workers = 1, .start = simul::start_method::exec});
    ADD_FAILURE() << "expected simul::error";
  } catch (const simul::error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("another build"), std::string::npos) << what;
    EXPECT_NE(what.find("build-id:0123456789abcdef"), std::string::npos) << what;
    EXPECT_NE(what.find(simul::detail::executable_build_id()), std::string::npos) << what;
  }
  simul::detail::forge_build_id_for_tests("");
  EXPECT_TRUE(no_children_left());
  // A static initializer of the program exits in the exec'd process.
  ::setenv(k_fail_start, "1", 1);
  try {
    simul::process_pool procs({.workers = 1, .start = simul::start_method::exec});
    ADD_FAILURE() << "expected simul::error";
  } catch (const simul::error& e) {
    EXPECT_NE(std::string(e.what()).find("exited with status 9 before it was ready"), std::string::npos) << e.what();
  }
  ::unsetenv(k_fail_start);
  EXPECT_TRUE(no_children_left());
  // The same build: the zygote looks like the program, and its variable is
  // gone before a task (or anything a task starts) could see it.
  simul::process_pool procs({.workers = 1, .start = simul::start_method::exec});
  EXPECT_EQ(procs.submit(square, 5).get(), 25);
  EXPECT_FALSE(procs.submit(zygote_variable_set, 0).get());
  const auto zygote = "/proc/" + std::to_string(procs.zygote_pid());
  EXPECT_EQ(read_file(zygote + "/cmdline"), std::string(program_invocation_name) + '\0');
  EXPECT_EQ(read_file(zygote + "/comm"), read_file("/proc/self/comm"));
  EXPECT_EQ(link_target(zygote + "/exe"), link_target("/proc/self/exe"));
  // It is an exec, not a fork: the variable was in its first environment.
  EXPECT_NE(read_file(zygote + "/environ").find("SIMUL_PROCPOOL_ZYGOTE="), std::string::npos);
  EXPECT_EQ(read_file("/proc/self/environ").find("SIMUL_PROCPOOL_ZYGOTE="), std::string::npos);
}

TEST(ProcessPoolStartMethod, ExecRefusesFunctionsOutsideTheExecutable) {
  const auto library_function = static_cast<int (*)(int)>(&::abs); // in the C library
  {
    simul::process_pool procs({.workers = 1, .start = simul::start_method::exec});
    EXPECT_THROW((void)procs.submit(library_function, -3), simul::code_address_error);
    EXPECT_EQ(procs.submit(square, 3).get(), 9); // nothing was queued; the pool goes on
    EXPECT_EQ(procs.stats().submitted, 1U);
  }
  EXPECT_THROW(simul::process_pool({.workers = 1, .initializer = &::endpwent, .start = simul::start_method::exec}),
               simul::code_address_error);
  EXPECT_TRUE(no_children_left());
  simul::process_pool forked({.workers = 1}); // fork shares the whole address space
  EXPECT_EQ(forked.submit(library_function, -3).get(), 3);
}

TEST_P(StartMethod, AProgramThatIgnoresSigchldStillLearnsOfCrashes) {
  // SIG_IGN for SIGCHLD survives fork and exec; a zygote that kept it would
  // have its workers reaped by the kernel and never report their deaths.
  const auto previous = ::signal(SIGCHLD, SIG_IGN);
  {
    simul::process_pool procs(with({.workers = 1, .task_timeout = 10s}));
    EXPECT_THROW((void)procs.submit(segfault, 0).get(), simul::worker_crashed);
    EXPECT_EQ(procs.submit(square, 4).get(), 16);
  }
  ::signal(SIGCHLD, previous);
}
