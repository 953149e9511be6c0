#pragma once

// Connections and servers over TCP and Unix-domain sockets (asyncio's
// open_connection, start_server, open_unix_connection, start_unix_server).
//
//   auto [reader, writer] = co_await simul::open_connection("example.org", 80);
//   auto srv = co_await simul::start_server(handler, "127.0.0.1", 0);
//   srv.port();                 // the port chosen when 0 was asked for
//
// A handler is any callable `task<void>(stream_reader, stream_writer)`; each
// accepted connection runs it as a task of its own. An exception escaping a
// handler is reported through the loop's exception handler (with the peer's
// address); a cancelled handler ends quietly. When the handler is done with
// its reader and writer the connection closes itself (see stream.hpp).
//
// `open_connection` resolves the host (numeric addresses skip DNS; an empty
// host is this machine's loopback addresses), tries each address in turn, or
// staggered with `happy_eyeballs_delay`, and throws `connection_error` naming
// the address and the system's text when none accepts ("connect to
// 127.0.0.1:9: connection refused (ECONNREFUSED)"; with several addresses,
// each one's), or `dns_error` when the name does not resolve.
// TCP connections have Nagle's algorithm off (TCP_NODELAY), as asyncio does.
// With `ssl` in the options, either side speaks TLS (see <simul/loop/ssl.hpp>).
//
// `start_server` binds every address the host resolves to, as asyncio does
// (an empty host means every interface: 0.0.0.0 and ::), all on one port —
// with port 0 the first bind picks it and the others share it. An address
// whose family the machine has not enabled (EADDRNOTAVAIL) is skipped; any
// other bind error fails the call and closes what was bound. With
// `reuse_port`, one loop per thread can each listen on the same port (see
// server_options). `close()` stops listening (open connections keep
// going); `wait_closed()` waits until the listener is closed and every handler
// task is done; `close_clients()` cancels the running handlers;
// `serve_forever()` suspends until the server is closed (cancelling it closes
// the server). A Unix server removes a stale socket file before binding and
// its own socket file when it closes.
//
// Thread-safety: loop thread only, inside a task for the coroutines.
// Lifetime: a `server` is a handle shared by its copies; the listener closes
// when `close()` is called or the last copy goes away. Handler tasks keep
// running after that until they end. Nothing may outlive the loop.

#include <simul/loop/detail/io_wait.hpp>
#include <simul/loop/io_error.hpp>
#include <simul/loop/socket_fd.hpp>
#include <simul/loop/ssl.hpp>
#include <simul/loop/stream.hpp>
#include <simul/loop/task.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul {

/// What a server runs for each accepted connection.
using connection_handler = std::function<task<void>(stream_reader, stream_writer)>;

// The options are plain values with nothing to destroy (a pointer to the TLS
// context, a string_view for the name): g++ 12 destroys an aggregate
// temporary with string or shared members twice when it appears in a
// `co_await` expression, as `co_await open_connection(h, p, {.limit = 16})`
// would make it. The call copies what they point to when it starts.

/// Options of `open_connection` / `open_unix_connection`.
struct connection_options {
  std::size_t limit = 64 * 1024; ///< the reader's limit (see stream_reader)
  /// TLS with this client context (asyncio's `ssl=`; <simul/loop/ssl.hpp>);
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

/// Options of `start_server` / `start_unix_server`.
struct server_options {
  int backlog = 128;             ///< the listen queue's length
  std::size_t limit = 64 * 1024; ///< each connection's reader limit
  /// SO_REUSEPORT (TCP only): servers of other loops, threads or processes
  /// that also ask for it may listen on the same address and port, and the
  /// kernel spreads incoming connections over them.
  bool reuse_port = false;
  /// TLS with this server context (asyncio's `ssl=`): a handler runs only
  /// once its client's handshake succeeded; other clients are dropped.
  /// Null: plain bytes. The server keeps its own reference.
  const ssl_context* ssl = nullptr;
  /// How long a client's TLS handshake may take before it is dropped.
  std::chrono::milliseconds ssl_handshake_timeout{60'000};
};
static_assert(std::is_trivially_destructible_v<server_options>, "see the comment above connection_options");

namespace detail {
class server_state;
void server_acquire(server_state* s) noexcept;
void server_release(server_state* s) noexcept;

/// The awaitable of `server::wait_closed()` and `serve_forever()`.
class server_wait_awaiter final : public io_waiter {
 public:
  server_wait_awaiter(server_state* s, bool all_done);
  server_wait_awaiter(server_wait_awaiter&& o) noexcept;
  ~server_wait_awaiter();
  bool await_ready() const noexcept;
  bool await_suspend(std::coroutine_handle<> h);
  void await_resume();

 private:
  server_state* m_server;
  bool m_all_done; // wait for the handlers too, not only the listener
};
} // namespace detail

/// A listening server (asyncio.Server). See the file comment.
///
/// Thread-safety: loop thread only. Lifetime: copies share one server; the
/// listener closes with `close()` or when the last copy is destroyed.
class server {
 public:
  server() noexcept = default;
  explicit server(detail::server_state* s) noexcept; // internal: shares `s`
  server(const server& o) noexcept;
  server(server&& o) noexcept : m_state(std::exchange(o.m_state, nullptr)) {}
  server& operator=(server o) noexcept {
    std::swap(m_state, o.m_state);
    return *this;
  }
  ~server();

  /// The port listened on (TCP); 0 for a Unix server.
  [[nodiscard]] int port() const;
  /// "host:port" (TCP, the host as given, 0.0.0.0 for every interface; for
  /// a list of hosts, each one's, joined by ", ") or the socket path (Unix).
  [[nodiscard]] std::string sockname() const;
  /// Every address listened on ("127.0.0.1:8080", "[::1]:8080"; the path for
  /// a Unix server); empty once closed (asyncio.Server.sockets).
  [[nodiscard]] std::vector<std::string> socknames() const;
  /// True while listening.
  [[nodiscard]] bool is_serving() const;
  /// Stops listening; open connections keep going. Idempotent.
  void close();
  /// Cancels every running handler task.
  void close_clients();
  /// How many handler tasks are running.
  [[nodiscard]] std::size_t active_connections() const;
  /// How many clients were dropped because their TLS handshake failed or
  /// timed out (a TLS server; always 0 otherwise).
  [[nodiscard]] std::size_t handshake_failures() const;
  /// How many times accepting failed for lack of descriptors or memory
  /// (EMFILE, ENFILE, ENOBUFS, ENOMEM). Each pauses accepting for a second;
  /// the clients wait in the listen queue meanwhile. The loop's exception
  /// handler hears of it once per episode (until an accept succeeds again).
  [[nodiscard]] std::size_t accept_failures() const;
  /// Suspends until the listener is closed and every handler task is done.
  [[nodiscard]] detail::server_wait_awaiter wait_closed() const;
  /// Suspends until the server is closed; cancelling it closes the server.
  [[nodiscard]] task<void> serve_forever() const;

  explicit operator bool() const noexcept { return m_state != nullptr; }

  /// The server's internals (for simul's own sources).
  [[nodiscard]] detail::server_state& state() const;

 private:
  detail::server_state* m_state = nullptr;
};

/// Connects to `host:port` over TCP (asyncio.open_connection).
/// Throws `dns_error`, `connection_error` (see the file comment).
[[nodiscard]] task<std::pair<stream_reader, stream_writer>> open_connection(std::string host, int port,
                                                                            connection_options options = {});

/// Adopts a connected TCP or Unix-domain stream socket (asyncio's
/// `open_connection(sock=...)`); see <simul/loop/socket_fd.hpp>. Throws
/// `io_error` naming the descriptor if it is not one.
[[nodiscard]] task<std::pair<stream_reader, stream_writer>> open_connection(socket_fd sock,
                                                                            connection_options options = {});

/// Listens on `host:port` (port 0: a free port) and runs `handler` for each
/// connection (asyncio.start_server). Throws `io_error` if it cannot bind
/// (address in use...), `dns_error` if the host does not resolve.
[[nodiscard]] task<server> start_server(connection_handler handler, std::string host, int port,
                                        server_options options = {});
/// Listens on every address of every host, all on one port (asyncio's list
/// of hosts); an empty host, or none, means every interface.
[[nodiscard]] task<server> start_server(connection_handler handler, std::vector<std::string> hosts, int port,
                                        server_options options = {});
/// The same for a braced list: `start_server(handler, {"127.0.0.1", "::1"}, port)`.
[[nodiscard]] task<server> start_server(connection_handler handler, std::initializer_list<std::string> hosts, int port,
                                        server_options options = {});

/// Serves connections on an adopted TCP or Unix-domain stream socket that is
/// listening or bound (asyncio's `start_server(sock=...)`; systemd's socket
/// activation hands such sockets from fd 3 on). The server closes the socket
/// when it closes; it does not remove a Unix socket's file. See
/// <simul/loop/socket_fd.hpp>; `reuse_port` is refused here.
[[nodiscard]] task<server> start_server(connection_handler handler, socket_fd sock, server_options options = {});

/// Connects to the Unix-domain socket at `path`.
[[nodiscard]] task<std::pair<stream_reader, stream_writer>> open_unix_connection(std::string path,
                                                                                 connection_options options = {});

/// Listens on the Unix-domain socket at `path`.
[[nodiscard]] task<server> start_unix_server(connection_handler handler, std::string path, server_options options = {});

} // namespace simul
