// The pool against what goes wrong around it: its zygote killed, stdio
// buffers that must not be copied into workers, a worker that forges a frame
// header.

#include <simul/procpool.hpp>

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

int square(int x) { return x * x; }
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int flush_stdout(int) { return std::fflush(stdout); }

/// This process's resident memory in bytes.
std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size = 0;
  std::size_t resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

} // namespace

TEST(ProcessPoolReliability, AKilledZygoteFailsTheTasksOnWorkersWithBrokenExecutor) {
  simul::process_pool procs({.workers = 2});
  ASSERT_EQ(procs.submit(square, 3).get(), 9);
  std::vector<simul::future<int>> running;
  for (int i = 0; i < 2; ++i) {
    running.push_back(procs.submit(sleep_ms, 20000));
  }
  auto queued = procs.submit(square, 4);
  std::this_thread::sleep_for(200ms); // both long tasks have reached their workers
  ASSERT_EQ(::kill(procs.zygote_pid(), SIGKILL), 0);
  for (auto& f : running) {
    // Generous: the failure comes within milliseconds; without the fix, never.
    ASSERT_TRUE(f.wait_for(20s)) << "a task on a worker stayed pending after its zygote died";
    try {
      (void)f.get();
      ADD_FAILURE() << "expected broken_executor";
    } catch (const simul::broken_executor& e) {
      EXPECT_NE(std::string(e.what()).find("zygote"), std::string::npos) << e.what();
    }
  }
  // The task sent ahead (or still queued) fails the same way.
  ASSERT_TRUE(queued.wait_for(20s));
  EXPECT_THROW((void)queued.get(), simul::broken_executor);
  EXPECT_TRUE(procs.is_shutdown());
  EXPECT_THROW((void)procs.submit(square, 1), simul::broken_executor);
}

TEST(ProcessPoolReliability, OutputBufferedBeforeThePoolIsWrittenOnce) {
  char path[] = "/tmp/simul-stdio-XXXXXX";
  const int file = ::mkstemp(path);
  ASSERT_GE(file, 0);
  std::fflush(stdout);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A program whose stdout is a file: fully buffered.
    ::dup2(file, STDOUT_FILENO);
    std::setvbuf(stdout, nullptr, _IOFBF, 4096);
    std::fputs("written once;", stdout);
    int status = 1;
    {
      simul::process_pool procs({.workers = 1});
      status = procs.submit(flush_stdout, 0).get() == 0 ? 0 : 2;
    }
    std::fflush(stdout);
    ::_exit(status);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::ifstream in(path);
  std::stringstream all;
  all << in.rdbuf();
  EXPECT_EQ(all.str(), "written once;");
  ::close(file);
  ::unlink(path);
}

TEST(ProcessPoolReliability, AForgedFrameHeaderCostsTheParentNoMemory) {
  simul::process_pool procs({.workers = 1});
  ASSERT_EQ(procs.submit(square, 2).get(), 4);
  const auto before = resident_bytes();
  // A valid header announcing a 1 GiB answer whose bytes never come.
  auto f = procs.submit(simul::task_options{.timeout = 1500ms}, [] {
    struct {
      std::uint32_t magic = 0x4c4d4953;
      std::uint16_t kind = 10;
      std::uint16_t nfds = 0;
      std::uint64_t id = 1;
      std::uint64_t fn = 0;
      std::uint64_t size = std::uint64_t{1} << 30;
    } header;
    [[maybe_unused]] auto n = ::write(simul::detail::worker_channel(), &header, sizeof(header));
    // A trickle of the announced bytes, so the parent reads again.
    const std::string some(1024, 'x');
    for (int i = 0; i < 3; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      n = ::write(simul::detail::worker_channel(), some.data(), some.size());
    }
    std::this_thread::sleep_for(std::chrono::seconds(20));
    return 1;
  });
  std::this_thread::sleep_for(500ms); // the parent has read the header and the trickle
  const auto during = resident_bytes();
  EXPECT_LT(during, before + (16u << 20)) << "the parent grew by " << ((during - before) >> 20) << " MiB";
  EXPECT_THROW((void)f.get(), simul::timeout_error);
  EXPECT_EQ(procs.submit(square, 5).get(), 25);
}
