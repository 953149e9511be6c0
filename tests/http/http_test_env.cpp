// Starts the test servers once for the whole binary and stops them at the
// end: test_server.py (aiohttp) always, nginx (HTTP/2 over TLS) when installed.

#include "http_test_env.hpp"

#include "local_servers.hpp"

#include <gtest/gtest.h>

#include <dirent.h>

#include <memory>

namespace simul::test {

namespace {

http_server g_server;
std::unique_ptr<nginx_server> g_nginx;
std::string g_nginx_missing = "not started";

class server_environment : public ::testing::Environment {
 public:
  void SetUp() override {
    const auto ports =
        start_python_server(m_python, {SIMUL_HTTP_PYTHON, SIMUL_HTTP_TEST_SERVER, SIMUL_TLS_DATA_DIR}, 3);
    g_server.port = ports[0];
    g_server.raw_port = ports[1];
    g_server.tls_port = ports[2];
    g_nginx = std::make_unique<nginx_server>();
    g_nginx_missing = g_nginx->start("/usr/sbin/nginx", SIMUL_TLS_DATA_DIR,
                                     "/tmp/simul-http-test-nginx-" + std::to_string(::getpid()));
    if (g_nginx_missing.empty()) {
      g_nginx->put("small.json", R"({"hello": "nginx"})");
    }
  }
  void TearDown() override {
    if (g_nginx) {
      g_nginx->process.stop();
      if (!g_nginx->dir.empty()) {
        std::system(("rm -rf '" + g_nginx->dir + "'").c_str());
      }
      g_nginx.reset();
    }
    m_python.stop();
  }

 private:
  child_process m_python;
};

[[maybe_unused]] auto* const g_environment = ::testing::AddGlobalTestEnvironment(new server_environment);

} // namespace

const http_server& server() { return g_server; }

const nginx_server* nginx(std::string& why_not) {
  why_not = g_nginx_missing;
  return g_nginx_missing.empty() ? g_nginx.get() : nullptr;
}

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
