// Starts test_server.py once for the whole binary and stops it at the end.

#include "http_test_env.hpp"

#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>

namespace simul::test {

namespace {

http_server g_server;

class server_environment : public ::testing::Environment {
 public:
  void SetUp() override {
    int to_child[2];
    int from_child[2];
    ASSERT_EQ(::pipe2(to_child, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(from_child, O_CLOEXEC), 0);
    m_pid = ::fork();
    ASSERT_GE(m_pid, 0);
    if (m_pid == 0) {
      ::dup2(to_child[0], 0);
      ::dup2(from_child[1], 1);
      const char* argv[] = {SIMUL_HTTP_PYTHON, SIMUL_HTTP_TEST_SERVER, SIMUL_TLS_DATA_DIR, nullptr};
      ::execv(argv[0], const_cast<char* const*>(argv));
      ::_exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    m_stdin = to_child[1];
    std::FILE* out = ::fdopen(from_child[0], "r");
    ASSERT_NE(out, nullptr);
    const int got = std::fscanf(out, "%d %d %d", &g_server.port, &g_server.raw_port, &g_server.tls_port);
    std::fclose(out);
    ASSERT_EQ(got, 3) << "the test server (" << SIMUL_HTTP_TEST_SERVER
                      << ") did not start: is python3-aiohttp installed?";
  }
  void TearDown() override {
    if (m_stdin >= 0) {
      ::close(m_stdin); // the server's cue to stop
    }
    if (m_pid > 0) {
      ::kill(m_pid, SIGTERM);
      int status = 0;
      ::waitpid(m_pid, &status, 0);
    }
  }

 private:
  pid_t m_pid = -1;
  int m_stdin = -1;
};

[[maybe_unused]] auto* const g_environment = ::testing::AddGlobalTestEnvironment(new server_environment);

} // namespace

const http_server& server() { return g_server; }

int open_fd_count() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) {
      ++n;
    }
    ::closedir(d);
  }
  return n;
}

} // namespace simul::test
