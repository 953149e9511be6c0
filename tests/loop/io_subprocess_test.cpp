// Child processes: pipes, exit statuses, signals and errors.

#include "co_assert.hpp"
#include "io_test_util.hpp"

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include "io/spawn.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using simul::stdio;
using simul::task;
using simul::test::open_fd_count;

namespace {
const std::vector<std::string> thirty{"30"};
} // namespace

TEST(LoopSubprocess, CommunicateThroughPipes) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    const std::vector<std::string> args{"-c", "sort; echo oops >&2; exit 3"};
    // Options with strings in a variable: g++ 12 mishandles an aggregate
    // temporary with non-trivial members inside a co_await expression.
    const simul::subprocess_options opts{.stdin_ = stdio::pipe, .stdout_ = stdio::pipe, .stderr_ = stdio::pipe};
    auto p = co_await simul::create_subprocess_exec("sh", args, opts);
    EXPECT_GT(p.pid(), 0);
    EXPECT_FALSE(p.returncode().has_value());
    auto [out, err] = co_await p.communicate("b\nc\na\n");
    EXPECT_EQ(out, "a\nb\nc\n");
    EXPECT_EQ(err, "oops\n");
    EXPECT_EQ(p.returncode(), 3);
    EXPECT_EQ(co_await p.wait(), 3);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopSubprocess, StreamsAreOrdinaryStreams) {
  simul::run([]() -> task<void> {
    const simul::subprocess_options opts{.stdin_ = stdio::pipe, .stdout_ = stdio::pipe};
    auto p = co_await simul::create_subprocess_exec("cat", {}, opts);
    for (int i = 0; i < 20; ++i) {
      const auto line = "line " + std::to_string(i) + "\n";
      p.stdin_.write(line);
      EXPECT_EQ(co_await p.stdout_.readline(), line);
    }
    p.stdin_.close();
    EXPECT_EQ(co_await p.stdout_.read(), "");
    EXPECT_EQ(co_await p.wait(), 0);
  }());
}

TEST(LoopSubprocess, WriteEofOnStdinEndsTheChildsInput) {
  simul::run([]() -> task<void> {
    const simul::subprocess_options opts{.stdin_ = stdio::pipe, .stdout_ = stdio::pipe};
    auto p = co_await simul::create_subprocess_exec("cat", {}, opts);
    EXPECT_TRUE(p.stdin_.can_write_eof());
    p.stdin_.write("half");
    p.stdin_.write_eof();
    EXPECT_EQ(co_await p.stdout_.read(), "half");
    EXPECT_EQ(co_await p.wait(), 0);
    p.stdin_.close();
  }());
}

TEST(LoopSubprocess, LargeOutputDoesNotBlock) {
  simul::run([]() -> task<void> {
    // 4 MiB on stdout and on stderr at once: both must be drained together.
    const std::vector<std::string> args{"-c", "head -c 4194304 /dev/zero; head -c 4194304 /dev/zero >&2"};
    const simul::subprocess_options opts{.stdout_ = stdio::pipe, .stderr_ = stdio::pipe};
    auto p = co_await simul::create_subprocess_exec("sh", args, opts);
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(out.size(), 4194304u);
    EXPECT_EQ(err.size(), 4194304u);
    EXPECT_EQ(p.returncode(), 0);
  }());
}

TEST(LoopSubprocess, DevnullInheritCwdAndEnv) {
  simul::run([]() -> task<void> {
    const std::vector<std::string> args{"-c", "pwd; echo \"$SIMUL_X\"; cat"};
    std::map<std::string, std::string> env;
    env["SIMUL_X"] = "42";
    env["PATH"] = "/usr/bin:/bin";
    simul::subprocess_options opts;
    opts.stdin_ = stdio::devnull;
    opts.stdout_ = stdio::pipe;
    opts.stderr_ = stdio::devnull;
    opts.cwd = "/tmp";
    opts.env = env;
    auto p = co_await simul::create_subprocess_exec("sh", args, opts);
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(out, "/tmp\n42\n"); // cat read /dev/null: nothing
    EXPECT_EQ(err, "");
    EXPECT_EQ(p.returncode(), 0);
    auto q = co_await simul::create_subprocess_exec("true");
    EXPECT_EQ(co_await q.wait(), 0);
  }());
}

TEST(LoopSubprocess, SignalsEndTheChild) {
  simul::run([]() -> task<void> {
    auto p = co_await simul::create_subprocess_exec("sleep", thirty);
    p.terminate();
    EXPECT_EQ(co_await p.wait(), -SIGTERM);
    p.kill(); // after the exit: nothing happens
    auto q = co_await simul::create_subprocess_exec("sleep", thirty);
    q.kill();
    EXPECT_EQ(co_await q.wait(), -SIGKILL);
    auto r = co_await simul::create_subprocess_exec("sleep", thirty);
    r.send_signal(SIGUSR1);
    EXPECT_EQ(co_await r.wait(), -SIGUSR1);
  }());
}

TEST(LoopSubprocess, MissingProgramIsAClearError) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    try {
      const simul::subprocess_options opts{.stdout_ = stdio::pipe};
      (void)co_await simul::create_subprocess_exec("simul-no-such-program", thirty, opts);
      ADD_FAILURE() << "spawn should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), ENOENT);
      EXPECT_EQ(e.address(), "simul-no-such-program");
      EXPECT_NE(std::string(e.what()).find("simul-no-such-program"), std::string::npos) << e.what();
    }
    EXPECT_THROW((void)co_await simul::create_subprocess_exec(""), simul::error);
    try {
      simul::subprocess_options opts;
      opts.cwd = "/no/such/dir";
      (void)co_await simul::create_subprocess_exec("true", {}, opts);
      ADD_FAILURE() << "spawn in a missing directory should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), ENOENT);
    }
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopSubprocess, CancelledWaitLeavesTheChildReaped) {
  simul::run([]() -> task<void> {
    auto p = co_await simul::create_subprocess_exec("sleep", thirty);
    auto waiting = simul::create_task(p.wait());
    co_await simul::sleep(5ms);
    waiting.cancel();
    EXPECT_THROW((void)co_await waiting, simul::cancelled_error);
    EXPECT_FALSE(p.returncode().has_value());
    p.kill();
    EXPECT_EQ(co_await p.wait(), -SIGKILL);
  }());
}

TEST(LoopSubprocess, ShellRunsACommandLineWithRedirections) {
  simul::run([]() -> task<void> {
    const simul::subprocess_options opts{.stdout_ = stdio::pipe, .stderr_ = stdio::pipe};
    auto p = co_await simul::create_subprocess_shell("printf 'a b' | tr ' ' '-'; echo oops >&2; exit 4", opts);
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(out, "a-b");
    EXPECT_EQ(err, "oops\n");
    EXPECT_EQ(p.returncode(), 4);

    auto missing = co_await simul::create_subprocess_shell("no-such-program-simul-test 2>/dev/null");
    EXPECT_EQ(co_await missing.wait(), 127); // the shell's "command not found"

    EXPECT_THROW((void)co_await simul::create_subprocess_shell(""), simul::error);
  }());
}

namespace {
// The state letter of /proc/<pid>/stat ('Z' for a zombie), or 0 once the
// process is gone (reaped).
char proc_state(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) {
    return 0;
  }
  const auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() ? line[paren + 2] : '?';
}
} // namespace

TEST(LoopSubprocess, AChildStillRunningWhenTheLoopClosesIsReapedWhenItExits) {
  int pid = 0;
  {
    simul::event_loop loop;
    loop.run_until_complete([](int* out) -> task<void> {
      const std::vector<std::string> args{"0.2"};
      auto p = co_await simul::create_subprocess_exec("sleep", args);
      *out = p.pid();
    }(&pid));
    loop.close(); // the child is still sleeping
  }
  ASSERT_GT(pid, 0);
  EXPECT_NE(proc_state(pid), 0) << "the child should outlive the loop";
  // Once it exits, nobody may leave it a zombie. Generous bound: 20 s.
  char state = 'S';
  for (int i = 0; i < 2000 && state != 0; ++i) {
    std::this_thread::sleep_for(10ms);
    state = proc_state(pid);
  }
  EXPECT_EQ(state, 0) << "child " << pid << " left in state " << state;
}

TEST(LoopSubprocess, StderrToStdoutJoinsThePipeInOrder) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    const simul::subprocess_options opts{.stdout_ = stdio::pipe, .stderr_ = stdio::to_stdout};
    auto p = co_await simul::create_subprocess_shell("echo one; echo two >&2; echo three", opts);
    EXPECT_FALSE(static_cast<bool>(p.stderr_)) << "stderr has no reader of its own";
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(out, "one\ntwo\nthree\n");
    EXPECT_EQ(err, "");
    EXPECT_EQ(p.returncode(), 0);

    const simul::subprocess_options quiet{.stdout_ = stdio::devnull, .stderr_ = stdio::to_stdout};
    auto q = co_await simul::create_subprocess_shell("echo lost >&2", quiet);
    EXPECT_EQ(co_await q.wait(), 0);

    const simul::subprocess_options wrong{.stdout_ = stdio::to_stdout};
    EXPECT_THROW((void)co_await simul::create_subprocess_shell("true", wrong), simul::error);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

namespace {

/// The fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session...
std::vector<long> stat_fields(const std::string& stat) {
  std::vector<long> out;
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string state;
  rest >> state;
  for (long v = 0; rest >> v && out.size() < 3;) {
    out.push_back(v);
  }
  return out; // ppid, pgrp, session
}

} // namespace

TEST(LoopSubprocess, PassFdsHandsTheChildDescriptorsUnderTheirNumbers) {
  const auto fds_before = open_fd_count();
  int passed[2];
  int kept[2];
  ASSERT_EQ(::pipe2(passed, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(kept, O_CLOEXEC), 0);
  simul::run([&]() -> task<void> {
    const auto w = std::to_string(passed[1]);
    const auto other = std::to_string(kept[1]);
    const std::vector<std::string> args{
        "-c", "echo through > /proc/self/fd/" + w + "; for fd in " + w + " " + other +
                  "; do if [ -e /proc/self/fd/$fd ]; then echo $fd open; else echo $fd closed; fi; done"};
    simul::subprocess_options opts{.stdout_ = stdio::pipe};
    opts.pass_fds = {passed[1]};
    auto p = co_await simul::create_subprocess_exec("sh", args, opts);
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(out, w + " open\n" + other + " closed\n");
    EXPECT_EQ(co_await p.wait(), 0);
  }());
  EXPECT_EQ(::fcntl(passed[1], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC) << "ours stays close-on-exec";
  for (const int fd : {passed[1], kept[0], kept[1]}) {
    ::close(fd);
  }
  char got[16] = {};
  EXPECT_EQ(::read(passed[0], got, sizeof got), 8); // the child has exited: EOF if it wrote nothing
  EXPECT_EQ(std::string(got, 8), "through\n");
  ::close(passed[0]);
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopSubprocess, PassFdsRefusesStandardAndClosedDescriptorsBeforeStarting) {
  simul::run([]() -> task<void> {
    const std::vector<std::string> args{"-c", "exit 0"};
    simul::subprocess_options standard;
    standard.pass_fds = {1};
    try {
      (void)co_await simul::create_subprocess_exec("sh", args, standard);
      ADD_FAILURE() << "fd 1 was accepted";
    } catch (const simul::io_error&) {
      ADD_FAILURE() << "fd 1 is a usage error, not a system one";
    } catch (const simul::error& e) {
      EXPECT_NE(std::string(e.what()).find("fd 1 is a standard stream"), std::string::npos) << e.what();
    }
    simul::subprocess_options closed;
    closed.pass_fds = {4000};
    try {
      (void)co_await simul::create_subprocess_exec("sh", args, closed);
      ADD_FAILURE() << "a closed descriptor was accepted";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EBADF);
      EXPECT_EQ(e.address(), "fd 4000");
    }
  }());
}

TEST(LoopSubprocess, StartNewSessionPutsTheChildInASessionOfItsOwn) {
  simul::run([]() -> task<void> {
    const std::vector<std::string> args{"-c", "exec cat /proc/self/stat"};
    for (const bool own : {true, false}) {
      simul::subprocess_options opts{.stdout_ = stdio::pipe};
      opts.start_new_session = own;
      auto p = co_await simul::create_subprocess_exec("sh", args, opts);
      auto [out, err] = co_await p.communicate();
      const auto fields = stat_fields(out);
      CO_ASSERT_EQ(fields.size(), 3U);
      if (own) {
        EXPECT_EQ(fields[1], p.pid()) << "its own process group";
        EXPECT_EQ(fields[2], p.pid()) << "its own session";
      } else {
        EXPECT_EQ(fields[2], ::getsid(0)) << "ours";
      }
    }
  }());
}

// ---- how children start (posix_spawn and a pidfd, or libuv's uv_spawn) ----
//
// ctest runs this file's tests twice: as they are, on the posix_spawn path,
// and as LoopSubprocess.uv_spawn with SIMUL_SPAWN=uv, on libuv's path.

namespace {

bool forced_to_uv() {
  const char* forced = std::getenv("SIMUL_SPAWN");
  return forced != nullptr && std::string(forced) == "uv";
}

/// A signal-set field of /proc/<pid>/status ("SigBlk", "SigIgn"): bit n-1
/// for signal n. Signals 32 and 33 are left out: glibc keeps them for its
/// own threads, and its posix_spawn leaves them ignored in the child.
std::uint64_t signal_set(const std::string& status, const std::string& name) {
  std::istringstream in(status);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + ":", 0) == 0) {
      return std::stoull(line.substr(name.size() + 1), nullptr, 16) & ~(std::uint64_t{3} << 31);
    }
  }
  ADD_FAILURE() << "no " << name << " in " << status;
  return 0;
}

/// Whether some child of this process is a zombie nobody reaped (reaps it).
bool reaped_a_zombie() {
  int status = 0;
  return ::waitpid(-1, &status, WNOHANG) > 0;
}

} // namespace

TEST(LoopSubprocess, SpawnPathFollowsTheSwitch) {
  EXPECT_EQ(simul::detail::posix_spawn_enabled(), !forced_to_uv());
  simul::run([]() -> task<void> {
    auto p = co_await simul::create_subprocess_exec("true");
    // libuv reaps its children from a SIGCHLD handler (while its loop runs);
    // the pidfd path needs none.
    struct sigaction current {};
    CO_ASSERT_EQ(::sigaction(SIGCHLD, nullptr, &current), 0);
    EXPECT_EQ(current.sa_handler == SIG_DFL, !forced_to_uv());
    EXPECT_EQ(co_await p.wait(), 0);
  }());
}

TEST(LoopSubprocess, ChildStartsWithDefaultSignalsAndNoneBlocked) {
  simul::run([]() -> task<void> {
    // The loop ignores SIGPIPE (as Python does); this thread also blocks SIGUSR2.
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigset_t before;
    ::pthread_sigmask(SIG_BLOCK, &usr2, &before);
    const simul::subprocess_options opts{.stdout_ = stdio::pipe};
    const std::vector<std::string> args{"/proc/self/status"};
    auto p = co_await simul::create_subprocess_exec("cat", args, opts);
    ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(signal_set(out, "SigIgn"), 0U) << out;
    EXPECT_EQ(signal_set(out, "SigBlk"), 0U) << out;
    EXPECT_EQ(p.returncode(), 0);
  }());
}

TEST(LoopSubprocess, AChildIgnoringSigtermIsKilled) {
  simul::run([]() -> task<void> {
    const std::vector<std::string> args{"-c", "trap '' TERM; echo ready; exec sleep 30"};
    const simul::subprocess_options opts{.stdout_ = stdio::pipe};
    auto p = co_await simul::create_subprocess_exec("sh", args, opts);
    EXPECT_EQ(co_await p.stdout_.readline(), "ready\n");
    p.terminate();
    co_await simul::sleep(50ms);
    EXPECT_FALSE(p.returncode().has_value()) << "SIGTERM is ignored";
    p.kill();
    EXPECT_EQ(co_await p.wait(), -SIGKILL);
  }());
}

TEST(LoopSubprocess, FailedStartsLeaveNoDescriptorAndNoZombie) {
  while (reaped_a_zombie()) {
  }
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    const simul::subprocess_options piped{.stdin_ = stdio::pipe, .stdout_ = stdio::pipe, .stderr_ = stdio::pipe};
    try {
      (void)co_await simul::create_subprocess_exec("simul-no-such-program", {}, piped);
      ADD_FAILURE() << "spawn should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), ENOENT);
      EXPECT_EQ(e.address(), "simul-no-such-program");
    }
    simul::subprocess_options nowhere = piped;
    nowhere.cwd = "/no/such/dir";
    try {
      (void)co_await simul::create_subprocess_exec("true", {}, nowhere);
      ADD_FAILURE() << "spawn in a missing directory should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), ENOENT);
      EXPECT_EQ(e.address(), "/no/such/dir") << e.what();
    }
    try {
      (void)co_await simul::create_subprocess_exec("/etc/passwd", {}, piped);
      ADD_FAILURE() << "a file that is not executable should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EACCES);
      EXPECT_EQ(e.address(), "/etc/passwd");
    }
    // The program is looked up in the PATH the child gets.
    simul::subprocess_options no_path = piped;
    no_path.env = std::map<std::string, std::string>{{"PATH", "/simul/no/such/dir"}};
    EXPECT_THROW((void)co_await simul::create_subprocess_exec("true", {}, no_path), simul::io_error);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
  EXPECT_FALSE(reaped_a_zombie());
}

TEST(LoopSubprocess, ManyConcurrentChildren) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    std::vector<simul::task_handle<int>> all;
    for (int i = 0; i < 40; ++i) {
      all.push_back(simul::create_task([](int n) -> task<int> {
        const std::vector<std::string> args{"-c", "echo $0", std::to_string(n)};
        const simul::subprocess_options opts{.stdout_ = stdio::pipe};
        auto p = co_await simul::create_subprocess_exec("sh", args, opts);
        auto [out, err] = co_await p.communicate();
        EXPECT_EQ(out, std::to_string(n) + "\n");
        co_return co_await p.wait();
      }(i)));
    }
    for (auto& h : all) {
      EXPECT_EQ(co_await h, 0);
    }
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
  EXPECT_FALSE(reaped_a_zombie());
}

TEST(LoopSubprocess, AChildReapedBehindTheLoopsBackExitsWith255) {
  if (forced_to_uv()) {
    GTEST_SKIP() << "libuv's path never sees such a child exit";
  }
  simul::run([]() -> task<void> {
    auto p = co_await simul::create_subprocess_exec("true");
    int status = 0;
    CO_ASSERT_EQ(::waitpid(p.pid(), &status, 0), p.pid()); // the loop thread reaps it itself
    EXPECT_EQ(co_await p.wait(), 255) << "asyncio's code for a child whose status is lost";
  }());
}

TEST(LoopSubprocess, ARelativePathEntryIsRelativeToTheChildsDirectory) {
  char dir_template[] = "/tmp/simul-spawn-XXXXXX";
  const char* dir = ::mkdtemp(dir_template);
  ASSERT_NE(dir, nullptr);
  const std::string script = std::string(dir) + "/simul-relative-program";
  std::ofstream(script) << "#!/bin/sh\necho found\n";
  ASSERT_EQ(::chmod(script.c_str(), 0755), 0);
  simul::run([](std::string cwd) -> task<void> {
    simul::subprocess_options opts{.stdout_ = stdio::pipe};
    opts.cwd = cwd;
    opts.env = std::map<std::string, std::string>{{"PATH", "."}};
    auto p = co_await simul::create_subprocess_exec("simul-relative-program", {}, opts);
    auto [out, err] = co_await p.communicate();
    EXPECT_EQ(out, "found\n");
    EXPECT_EQ(p.returncode(), 0);
  }(dir));
  ::unlink(script.c_str());
  ::rmdir(dir);
}
