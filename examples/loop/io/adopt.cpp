// io_adopt: a supervisor binds the socket, a worker process serves it.
//
// A program often gets its sockets from someone else: systemd's socket
// activation, a supervisor that bound a port and dropped privileges, a
// parent that made a socketpair to talk to its child. `simul::socket_fd`
// hands such a socket to the loop (asyncio's `sock=`).
//
// Here the parent binds a listening socket and makes a socketpair, then
// forks. The child serves the listening socket with `start_server` and
// talks to the parent over its end of the pair with `open_connection`; the
// parent, on its own loop, adopts the other end, waits for "ready", sends
// three clients to the port and tells the child to stop.
//
//   parent: bind + listen, socketpair, fork ──────────────── clients ── "stop" ── waitpid
//   child:  start_server(socket_fd{listener}) ── "ready" ──── serves ── closes ── exit 0
//
// Output:
//   worker ready on 127.0.0.1:<port>
//   3 clients answered by the worker process: yes
//   worker exited with status 0

#include <simul/loop.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

namespace {

simul::task<void> answer(simul::stream_reader reader, simul::stream_writer writer) {
  (void)co_await reader.readline();
  writer.write("pid " + std::to_string(::getpid()) + "\n");
  writer.close();
  co_await writer.wait_closed();
}

/// The worker: serves the inherited socket until the parent says "stop".
simul::task<void> worker(int listener, int control) {
  auto srv = co_await simul::start_server(answer, simul::socket_fd{listener});
  auto [reader, writer] = co_await simul::open_connection(simul::socket_fd{control});
  writer.write("ready " + srv.sockname() + "\n");
  (void)co_await reader.readline(); // "stop", or EOF if the parent died
  srv.close();
  co_await srv.wait_closed();
  writer.close();
  co_await writer.wait_closed();
}

simul::task<void> supervisor(int control, pid_t child) {
  auto [reader, writer] = co_await simul::open_connection(simul::socket_fd{control});
  std::string ready = co_await reader.readline(); // "ready 127.0.0.1:<port>\n"
  const std::string where = ready.substr(6, ready.size() - 7);
  std::cout << "worker ready on " << where << "\n";
  const int port = std::stoi(where.substr(where.rfind(':') + 1));
  int by_child = 0;
  for (int i = 0; i < 3; ++i) {
    auto [r, w] = co_await simul::open_connection("127.0.0.1", port);
    w.write("who?\n");
    by_child += co_await r.readline() == "pid " + std::to_string(child) + "\n" ? 1 : 0;
    w.close();
  }
  std::cout << "3 clients answered by the worker process: " << (by_child == 3 ? "yes" : "no") << "\n";
  writer.write("stop\n");
  co_await writer.drain();
  (void)co_await reader.read(); // EOF: the worker closed its end
  writer.close();
  co_await writer.wait_closed();
}

} // namespace

int main() {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK); // port 0: a free one
  int pair[2];
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 16) != 0 || ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    std::perror("io_adopt: socket setup");
    return 1;
  }
  const pid_t child = ::fork();
  if (child < 0) {
    std::perror("io_adopt: fork");
    return 1;
  }
  if (child == 0) {
    ::close(pair[0]);
    simul::run(worker(listener, pair[1]));
    ::_exit(0);
  }
  ::close(listener); // the worker's now
  ::close(pair[1]);
  simul::run(supervisor(pair[0], child));
  int status = 0;
  ::waitpid(child, &status, 0);
  std::cout << "worker exited with status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << "\n";
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
