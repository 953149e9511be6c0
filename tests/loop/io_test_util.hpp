#pragma once

// Helpers shared by the loop's I/O tests.

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unistd.h>

namespace simul::test {

/// Open file descriptors of this process. The first loop of a process opens
/// libuv's process-wide signal pipe (kept until exit): a warm-up loop makes
/// sure it is counted before and after alike.
inline std::size_t open_fd_count() {
  static const bool warmed_up = [] {
    event_loop warm_up;
    warm_up.close();
    return true;
  }();
  (void)warmed_up;
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd"); d != nullptr) {
    while (::readdir(d) != nullptr) {
      ++n;
    }
    ::closedir(d);
  }
  return n; // includes ".", ".." and the directory's own descriptor: constant
}

/// Suspends until `cond()` holds, polling every millisecond (tests only).
template <class Cond>
task<void> until(Cond cond) {
  while (!cond()) {
    co_await sleep(std::chrono::milliseconds(1));
  }
}

/// A connection handler that sends every line back until EOF, then closes.
inline task<void> echo_lines(stream_reader reader, stream_writer writer) {
  while (true) {
    auto line = co_await reader.readline();
    if (line.empty()) {
      break;
    }
    writer.write(line);
    co_await writer.drain();
  }
  writer.close();
}

/// Writes `line` (ending in '\n') on `writer` and expects `reader` to read it
/// next: back from an echo_lines server, or through a connected pair.
inline task<void> send_and_expect(stream_reader& reader, stream_writer& writer, std::string line) {
  writer.write(line);
  EXPECT_EQ(co_await reader.readline(), line);
}

/// A connection handler that writes `payload` and closes.
inline connection_handler send_and_close(std::string payload) {
  return [payload](stream_reader, stream_writer writer) -> task<void> {
    writer.write(payload);
    writer.close();
    co_await writer.wait_closed();
  };
}

/// A socket path unique to this process and `name`.
inline std::string temp_socket_path(const std::string& name) {
  return "/tmp/simul-test-" + std::to_string(::getpid()) + "-" + name + ".sock";
}

/// A TCP listener on a loopback address that never accepts, its queue
/// filled: the kernel drops further SYNs, so a connect to it hangs (for about
/// two minutes of retries) until cancelled. `ok()` is false where it cannot
/// be made (no IPv6 on the loopback, say).
class black_hole {
 public:
  /// On 127.0.0.1 (AF_INET) or ::1 (AF_INET6), at `port` (0: a free one).
  black_hole(int family, int port) {
    sockaddr_storage addr{};
    socklen_t len = 0;
    if (family == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(&addr);
      in->sin_family = AF_INET;
      in->sin_port = htons(static_cast<std::uint16_t>(port));
      in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof(sockaddr_in);
    } else {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(static_cast<std::uint16_t>(port));
      in6->sin6_addr = in6addr_loopback;
      len = sizeof(sockaddr_in6);
    }
    m_listener = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (m_listener < 0 || ::bind(m_listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(m_listener, 0) != 0 || ::getsockname(m_listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return;
    }
    m_port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&addr)->sin_port
                                     : reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    // The one place in the queue: a connection nobody accepts.
    m_filler = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (m_filler < 0 || ::connect(m_filler, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
      return;
    }
    // Check that a further connect does hang.
    const int probe = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0) {
      return;
    }
    if (::connect(probe, reinterpret_cast<sockaddr*>(&addr), len) != 0 && errno == EINPROGRESS) {
      pollfd p{probe, POLLOUT, 0};
      m_ok = ::poll(&p, 1, 100) == 0;
    }
    ::close(probe);
  }
  ~black_hole() {
    for (int fd : {m_filler, m_listener}) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
  }
  black_hole(const black_hole&) = delete;
  black_hole& operator=(const black_hole&) = delete;

  [[nodiscard]] bool ok() const noexcept { return m_ok; }
  [[nodiscard]] int port() const noexcept { return m_port; }

 private:
  int m_listener = -1;
  int m_filler = -1;
  int m_port = 0;
  bool m_ok = false;
};

} // namespace simul::test
