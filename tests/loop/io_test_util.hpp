#pragma once

// Helpers shared by the loop's I/O tests.

#include <simul/loop.hpp>

#include <dirent.h>

#include <chrono>
#include <cstddef>
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

} // namespace simul::test
