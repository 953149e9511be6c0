#pragma once

// The test server of simul's http tests (test_server.py), started once per
// test binary by a gtest Environment, on 127.0.0.1 with ephemeral ports.

#include <string>

namespace simul::test {

struct http_server {
  int port = 0;     // the aiohttp app over HTTP
  int raw_port = 0; // hand-written answers (HTTP/1.0, resets)
  int tls_port = 0; // the aiohttp app over HTTPS (data/tls/localhost.pem)

  [[nodiscard]] std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
  [[nodiscard]] std::string raw_url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(raw_port) + path;
  }
  [[nodiscard]] std::string tls_url(const std::string& path) const {
    return "https://localhost:" + std::to_string(tls_port) + path;
  }
};

/// The running server (the Environment started it before the first test).
const http_server& server();

struct nginx_server;
/// nginx with HTTP/2 over TLS (www/small.json), or null with the reason in `why_not`.
const nginx_server* nginx(std::string& why_not);

/// How many descriptors this process has open.
int open_fd_count();

} // namespace simul::test
