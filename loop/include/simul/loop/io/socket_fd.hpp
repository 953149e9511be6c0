#pragma once

// An open socket handed to the loop: asyncio's `sock=` argument.
//
//   int fds[2];
//   ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
//   auto [reader, writer] = co_await simul::open_connection(simul::socket_fd{fds[0]});
//   auto srv = co_await simul::start_server(handler, simul::socket_fd{3}); // socket activation
//   auto ep = co_await simul::create_datagram_endpoint(simul::socket_fd{udp_fd});
//
// What each call takes: `open_connection` a connected stream socket (TCP or
// Unix-domain); `start_server` a stream socket that is listening, or bound
// (it is put to listen with the server's backlog); `create_datagram_endpoint`
// an unconnected UDP socket (an unbound one gets a free port with its first
// `send_to`). Any other descriptor is refused with an `io_error` that names
// it: a closed descriptor (EBADF), a file that is not a socket (ENOTSOCK), a
// socket of the wrong type (EPROTOTYPE) or family (EAFNOSUPPORT), a stream
// socket that is not connected (ENOTCONN) or is listening (EINVAL) where a
// connection is wanted, a connected socket where a server or an endpoint is
// wanted (EISCONN), a bound socket that cannot listen (its listen() error), a
// descriptor the loop already uses (EEXIST).
//
// Ownership: on success the stream, server or endpoint owns the descriptor,
// makes it non-blocking and closes it when it closes. When the call throws,
// the descriptor is still open, unchanged, and still the caller's. Hand each
// socket to one call only.

namespace simul {

/// A socket descriptor to adopt (see the file comment).
struct socket_fd {
  explicit socket_fd(int descriptor) noexcept : fd(descriptor) {}
  int fd;
};

} // namespace simul
