#pragma once

// Connecting: the client's side of TCP and Unix-domain streams (asyncio's
// open_connection, open_unix_connection).
//
//   auto [reader, writer] = co_await simul::open_connection("example.org", 80);
//
// `open_connection` resolves the host (numeric addresses skip DNS; an empty
// host is this machine's loopback addresses), tries each address in turn, or
// staggered with `happy_eyeballs_delay`, and throws `connection_error` naming
// the address and the system's text when none accepts ("connect to
// 127.0.0.1:9: connection refused (ECONNREFUSED)"; with several addresses,
// each one's), or `dns_error` when the name does not resolve.
// TCP connections have Nagle's algorithm off (TCP_NODELAY), as asyncio does.
// With `ssl` in the options, the connection speaks TLS (see
// <simul/loop/io/ssl.hpp>). The server's side is <simul/loop/io/server.hpp>.
//
// Thread-safety: loop thread only, inside a task. Lifetime: the reader and
// writer share the connection (see <simul/loop/io/stream.hpp>); nothing may
// outlive the loop.

#include <simul/loop/io/io_error.hpp>
#include <simul/loop/io/socket_fd.hpp>
#include <simul/loop/io/ssl.hpp>
#include <simul/loop/io/stream.hpp>
#include <simul/loop/task.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace simul {

// The options are plain values with nothing to destroy (a pointer to the TLS
// context, a string_view for the name): g++ 12 destroys an aggregate
// temporary with string or shared members twice when it appears in a
// `co_await` expression, as `co_await open_connection(h, p, {.limit = 16})`
// would make it. The call copies what they point to when it starts.

/// Options of `open_connection` / `open_unix_connection`.
struct connection_options {
  std::size_t limit = 64 * 1024; ///< the reader's limit (see stream_reader)
  /// TLS with this client context (asyncio's `ssl=`; <simul/loop/io/ssl.hpp>);
  /// null: plain bytes. Must live until the call has started; the
  /// connection keeps its own reference.
  const ssl_context* ssl = nullptr;
  /// The name sent in the TLS hello (SNI) and checked against the server's
  /// certificate; empty: the host connected to. Needed with a context that
  /// checks hostnames when there is no host (a Unix socket, a socket_fd).
  std::string_view server_hostname{};
  /// How long the TLS handshake may take before `timeout_error`.
  std::chrono::milliseconds ssl_handshake_timeout{60'000};

  // TCP only (`open_connection(host, port)`); the other forms refuse them.

  /// Only addresses of this family: AF_INET or AF_INET6; AF_UNSPEC (0): any
  /// (asyncio's `family=`).
  int family = 0;
  /// Binds the socket to this local host and port before connecting
  /// (asyncio's `local_addr`): a name or numeric address, and a port (0: any
  /// free one). Each remote address uses the first local address of its
  /// family that binds. Empty host and port 0: the system chooses. Like
  /// `server_hostname`, the host must live until the call has started.
  std::string_view local_host{};
  int local_port = 0;
  /// Happy Eyeballs (RFC 8305; asyncio's `happy_eyeballs_delay`): while an
  /// attempt is pending this long, the next address's attempt starts beside
  /// it; a failed attempt starts the next one at once. The first connection
  /// wins and the others are closed. None: one address after another.
  std::optional<std::chrono::milliseconds> happy_eyeballs_delay{};
  /// Reorders the addresses by family (asyncio's `interleave`): this many of
  /// the first family, then one of each family in turn. None: as resolved,
  /// or 1 with `happy_eyeballs_delay`.
  std::optional<std::size_t> interleave{};
  /// When no address accepts, throw an `exception_group` holding each
  /// attempt's error in the order tried (asyncio's `all_errors`), instead
  /// of one `connection_error` whose message lists them.
  bool all_errors = false;
};

static_assert(std::is_trivially_destructible_v<connection_options>, "see the comment above connection_options");
/// Connects to `host:port` over TCP (asyncio.open_connection).
/// Throws `dns_error`, `connection_error` (see the file comment).
[[nodiscard]] task<std::pair<stream_reader, stream_writer>> open_connection(std::string host, int port,
                                                                            connection_options options = {});

/// Adopts a connected TCP or Unix-domain stream socket (asyncio's
/// `open_connection(sock=...)`); see <simul/loop/io/socket_fd.hpp>. Throws
/// `io_error` naming the descriptor if it is not one.
[[nodiscard]] task<std::pair<stream_reader, stream_writer>> open_connection(socket_fd sock,
                                                                            connection_options options = {});
/// Connects to the Unix-domain socket at `path`.
[[nodiscard]] task<std::pair<stream_reader, stream_writer>> open_unix_connection(std::string path,
                                                                                 connection_options options = {});
} // namespace simul
