// Adopting sockets the program made itself (asyncio's sock= argument):
// open_connection, start_server and create_datagram_endpoint on a socket_fd.

#include "co_assert.hpp"
#include "io_test_util.hpp"

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>

using namespace std::chrono_literals;
using simul::socket_fd;
using simul::stream_reader;
using simul::stream_writer;
using simul::task;
using simul::test::echo_lines;
using simul::test::open_fd_count;
using simul::test::send_and_expect;

namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }
bool is_nonblocking(int fd) { return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

int tcp_socket() { return ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); }

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

/// A TCP socket bound to a free loopback port, listening if `listen`.
int bound_tcp_socket(bool listen) {
  const int fd = tcp_socket();
  const auto a = loopback(0);
  EXPECT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
  if (listen) {
    EXPECT_EQ(::listen(fd, 16), 0);
  }
  return fd;
}

/// Sends a line through `writer` and expects it back from `reader`.
task<void> expect_round_trip(stream_reader& reader, stream_writer& writer, std::string line) {
  writer.write(line + "\n");
  co_await writer.drain();
  EXPECT_EQ(co_await reader.readline(), line + "\n");
}

} // namespace

TEST(LoopAdopt, ASocketpairBecomesTwoStreamsThatCloseTheirDescriptors) {
  const auto fds_before = open_fd_count();
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  simul::run([&]() -> task<void> {
    auto [ra, wa] = co_await simul::open_connection(socket_fd{fds[0]});
    auto [rb, wb] = co_await simul::open_connection(socket_fd{fds[1]});
    EXPECT_EQ(wa.get_extra_info("fileno"), std::to_string(fds[0]));
    EXPECT_TRUE(is_nonblocking(fds[0]));
    co_await send_and_expect(rb, wa, "ping\n");
    co_await send_and_expect(ra, wb, "pong\n");
    wa.write_eof();
    EXPECT_EQ(co_await rb.read(), ""); // EOF crosses too
    wa.close();
    wb.close();
    co_await wa.wait_closed();
    co_await wb.wait_closed();
  }());
  EXPECT_FALSE(is_open(fds[0]));
  EXPECT_FALSE(is_open(fds[1]));
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopAdopt, AnAcceptedTcpSocketBecomesAStream) {
  const auto fds_before = open_fd_count();
  const int listener = bound_tcp_socket(true);
  const int port = local_port(listener);
  simul::run([&]() -> task<void> {
    auto [client_r, client_w] = co_await simul::open_connection("127.0.0.1", port);
    const int accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC); // queued already: no wait
    CO_ASSERT_TRUE(accepted >= 0);
    auto [server_r, server_w] = co_await simul::open_connection(socket_fd{accepted});
    EXPECT_EQ(server_w.get_extra_info("peername"), client_w.get_extra_info("sockname"));
    EXPECT_EQ(server_w.get_extra_info("sockname"), "127.0.0.1:" + std::to_string(port));
    co_await send_and_expect(server_r, client_w, "hello\n");
    co_await send_and_expect(client_r, server_w, "back\n");
    client_w.close();
    EXPECT_EQ(co_await server_r.read(), "");
    server_w.close();
    co_await server_w.wait_closed();
    EXPECT_FALSE(is_open(accepted));
  }());
  ::close(listener);
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopAdopt, AServerRunsOnAListeningABoundOrAnUnboundTcpSocket) {
  const auto fds_before = open_fd_count();
  for (const int state : {0, 1, 2}) { // unbound, bound, listening
    SCOPED_TRACE(state);
    const int fd = state == 0 ? tcp_socket() : bound_tcp_socket(state == 2);
    simul::run([&]() -> task<void> {
      auto srv = co_await simul::start_server(echo_lines, socket_fd{fd});
      EXPECT_TRUE(srv.is_serving());
      EXPECT_EQ(srv.port(), local_port(fd)); // listen() gave the unbound one a port
      CO_ASSERT_TRUE(srv.port() > 0);
      // listen() binds an unbound socket to every interface.
      EXPECT_EQ(srv.sockname(), (state == 0 ? "0.0.0.0:" : "127.0.0.1:") + std::to_string(srv.port()));
      EXPECT_EQ(srv.socknames(), std::vector<std::string>{srv.sockname()});
      auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
      co_await expect_round_trip(reader, writer, "adopted");
      writer.close();
      co_await writer.wait_closed();
      srv.close();
      co_await srv.wait_closed();
      EXPECT_FALSE(is_open(fd));
    }());
  }
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopAdopt, AServerRunsOnAUnixSocketAndLeavesItsFile) {
  const auto path = simul::test::temp_socket_path("adopt");
  ::unlink(path.c_str());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
  simul::run([&]() -> task<void> {
    auto srv = co_await simul::start_server(echo_lines, socket_fd{fd});
    EXPECT_EQ(srv.sockname(), path);
    EXPECT_EQ(srv.port(), 0);
    auto [reader, writer] = co_await simul::open_unix_connection(path);
    co_await expect_round_trip(reader, writer, "over a path");
    writer.close();
    srv.close();
    co_await srv.wait_closed();
  }());
  EXPECT_FALSE(is_open(fd));
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << "the file is the program's to remove, as it made it";
  ::unlink(path.c_str());
}

TEST(LoopAdopt, ADatagramEndpointRunsOnABoundOrAnUnboundUdpSocket) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    auto peer = co_await simul::create_datagram_endpoint("127.0.0.1", 0);
    // Bound: the peer can reach it at once.
    const int bound = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const auto a = loopback(0);
    CO_ASSERT_EQ(::bind(bound, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
    auto ep = co_await simul::create_datagram_endpoint(socket_fd{bound}, {.broadcast = true});
    EXPECT_EQ(ep.port(), local_port(bound));
    int on = 0;
    socklen_t size = sizeof on;
    ::getsockopt(bound, SOL_SOCKET, SO_BROADCAST, &on, &size);
    EXPECT_EQ(on, 1);
    co_await peer.send_to("to bound", "127.0.0.1", ep.port());
    auto d = co_await ep.receive_from();
    EXPECT_EQ(d.data, "to bound");
    EXPECT_EQ(d.port, peer.port());
    co_await ep.send_to("reply", "127.0.0.1", d.port);
    EXPECT_EQ((co_await peer.receive_from()).data, "reply");
    // Unbound: its first send gives it a port, and the answer comes back.
    const int unbound = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    auto fresh = co_await simul::create_datagram_endpoint(socket_fd{unbound});
    co_await fresh.send_to("first", "127.0.0.1", peer.port());
    auto got = co_await peer.receive_from();
    EXPECT_EQ(got.data, "first");
    EXPECT_EQ(got.port, fresh.port());
    co_await peer.send_to("answer", "127.0.0.1", got.port);
    EXPECT_EQ((co_await fresh.receive_from()).data, "answer");
    ep.close();
    fresh.close();
    peer.close();
    co_await simul::sleep(1ms); // the close callbacks
    EXPECT_FALSE(is_open(bound));
    EXPECT_FALSE(is_open(unbound));
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

namespace {

/// Runs `adopt` on a loop, expects an io_error with `code` naming the
/// descriptor, and checks the descriptor is still open and still blocking.
void expect_refused(int fd, int code, const std::function<task<void>()>& adopt) {
  simul::run([&]() -> task<void> {
    try {
      co_await adopt();
      ADD_FAILURE() << "fd " << fd << " was adopted";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_EQ(e.address(), "fd " + std::to_string(fd));
      EXPECT_NE(std::string(e.what()).find("fd " + std::to_string(fd) + " "), std::string::npos) << e.what();
    }
  }());
  if (fd >= 0 && code != EBADF) {
    EXPECT_TRUE(is_open(fd)) << "a refused socket stays the caller's";
    EXPECT_FALSE(is_nonblocking(fd)) << "and unchanged";
  }
}

task<void> connect_on(int fd) { (void)co_await simul::open_connection(socket_fd{fd}); }
task<void> serve_on(int fd) { (void)co_await simul::start_server(echo_lines, socket_fd{fd}); }
task<void> receive_on(int fd) { (void)co_await simul::create_datagram_endpoint(socket_fd{fd}); }

} // namespace

TEST(LoopAdopt, RefusesWhatItCannotUseAndLeavesItWithTheCaller) {
  const auto fds_before = open_fd_count();
  const int closed = 4000; // far above what the test opens: a low number would be reused by the loop
  ASSERT_FALSE(is_open(closed));
  expect_refused(-1, EBADF, [] { return connect_on(-1); });
  expect_refused(closed, EBADF, [closed] { return serve_on(closed); });

  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  expect_refused(pipe_fds[0], ENOTSOCK, [&] { return connect_on(pipe_fds[0]); });
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);

  const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  expect_refused(udp, EPROTOTYPE, [udp] { return connect_on(udp); });
  expect_refused(udp, EPROTOTYPE, [udp] { return serve_on(udp); });
  const auto peer = loopback(9);
  ASSERT_EQ(::connect(udp, reinterpret_cast<const sockaddr*>(&peer), sizeof peer), 0);
  expect_refused(udp, EISCONN, [udp] { return receive_on(udp); });
  ::close(udp);

  const int unconnected = tcp_socket();
  expect_refused(unconnected, ENOTCONN, [unconnected] { return connect_on(unconnected); });
  expect_refused(unconnected, EPROTOTYPE, [unconnected] { return receive_on(unconnected); });
  ::close(unconnected);

  const int listening = bound_tcp_socket(true);
  expect_refused(listening, EINVAL, [listening] { return connect_on(listening); });
  // A connected socket is no server's: the client side of a connection to `listening`.
  const int client = tcp_socket();
  const auto to = loopback(local_port(listening));
  ASSERT_EQ(::connect(client, reinterpret_cast<const sockaddr*>(&to), sizeof to), 0);
  expect_refused(client, EISCONN, [client] { return serve_on(client); });
  ::close(client);
  ::close(listening);

  // An unbound Unix stream socket cannot listen: the server's own listen() fails first.
  const int unix_unbound = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  expect_refused(unix_unbound, EINVAL, [unix_unbound] { return serve_on(unix_unbound); });
  ::close(unix_unbound);
  int dgram_pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dgram_pair), 0);
  expect_refused(dgram_pair[0], EAFNOSUPPORT, [&] { return receive_on(dgram_pair[0]); });
  ::close(dgram_pair[0]);
  ::close(dgram_pair[1]);
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopAdopt, OptionsThatNeedAFreshSocketAreRefused) {
  const int listening = bound_tcp_socket(true);
  const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  simul::run([&]() -> task<void> {
    try {
      (void)co_await simul::start_server(echo_lines, socket_fd{listening}, {.reuse_port = true});
      ADD_FAILURE() << "reuse_port was accepted";
    } catch (const simul::error& e) {
      EXPECT_NE(std::string(e.what()).find("reuse_port"), std::string::npos) << e.what();
    }
    try {
      (void)co_await simul::create_datagram_endpoint(socket_fd{udp}, {.reuse_address = true});
      ADD_FAILURE() << "reuse_address was accepted";
    } catch (const simul::error& e) {
      EXPECT_NE(std::string(e.what()).find("reuse_address"), std::string::npos) << e.what();
    }
  }());
  EXPECT_TRUE(is_open(listening));
  EXPECT_TRUE(is_open(udp));
  ::close(listening);
  ::close(udp);
}

TEST(LoopAdopt, ASocketTheLoopAlreadyUsesIsRefusedAndKeepsWorking) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  simul::run([&]() -> task<void> {
    auto [ra, wa] = co_await simul::open_connection(socket_fd{fds[0]});
    auto [rb, wb] = co_await simul::open_connection(socket_fd{fds[1]});
    try {
      (void)co_await simul::open_connection(socket_fd{fds[0]});
      ADD_FAILURE() << "the same descriptor was adopted twice";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EEXIST) << e.what();
    }
    co_await expect_round_trip(rb, wa, "still fine");
    wa.close();
    wb.close();
    co_await wa.wait_closed();
    co_await wb.wait_closed();
  }());
  EXPECT_FALSE(is_open(fds[0]));
}
