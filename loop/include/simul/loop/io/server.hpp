#pragma once

// Servers over TCP and Unix-domain sockets (asyncio's start_server,
// start_unix_server).
//
//   auto srv = co_await simul::start_server(handler, "127.0.0.1", 0);
//   srv.port();                 // the port chosen when 0 was asked for
//
// A handler is any callable `task<void>(stream_reader, stream_writer)`; each
// accepted connection runs it as a task of its own. An exception escaping a
// handler is reported through the loop's exception handler (with the peer's
// address); a cancelled handler ends quietly. When the handler is done with
// its reader and writer the connection closes itself (see stream.hpp).
// With `ssl` in the options, the server speaks TLS (see
// <simul/loop/io/ssl.hpp>). The client's side is <simul/loop/io/connection.hpp>.
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

#include <simul/loop/detail/counted_ref.hpp>
#include <simul/loop/detail/wait_list.hpp>
#include <simul/loop/io/io_error.hpp>
#include <simul/loop/io/socket_fd.hpp>
#include <simul/loop/io/ssl.hpp>
#include <simul/loop/io/stream.hpp>
#include <simul/loop/task.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul {

/// What a server runs for each accepted connection.
using connection_handler = std::function<task<void>(stream_reader, stream_writer)>;

// Like connection_options (<simul/loop/io/connection.hpp>), the options are
// plain values with nothing to destroy: g++ 12 destroys an aggregate temporary
// with string or shared members twice when it appears in a `co_await`
// expression.

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
static_assert(std::is_trivially_destructible_v<server_options>, "see the comment above server_options");

namespace detail {
class server_state;

/// The awaitable of `server::wait_closed()` and `serve_forever()`.
class server_wait_awaiter final : public parked_waiter {
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
  explicit server(detail::server_state* s) noexcept : m_state(s) {} // internal: shares `s`

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

  explicit operator bool() const noexcept { return static_cast<bool>(m_state); }

  /// The server's internals (for simul's own sources).
  [[nodiscard]] detail::server_state& state() const;

 private:
  detail::counted_ref<detail::server_state> m_state;
};
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
/// <simul/loop/io/socket_fd.hpp>; `reuse_port` is refused here.
[[nodiscard]] task<server> start_server(connection_handler handler, socket_fd sock, server_options options = {});
/// Listens on the Unix-domain socket at `path`.
[[nodiscard]] task<server> start_unix_server(connection_handler handler, std::string path, server_options options = {});
} // namespace simul
