#pragma once

// UDP: a datagram endpoint bound to a local address (asyncio's
// create_datagram_endpoint, as coroutines).
//
//   auto ep = co_await simul::create_datagram_endpoint("127.0.0.1", 0);
//   co_await ep.send_to("ping", "127.0.0.1", other_port);
//   simul::datagram d = co_await ep.receive_from();   // d.data, d.host, d.port
//
// The loop receives datagrams as they arrive and queues them for
// `receive_from`; past `max_queued` datagrams the newest are dropped (and
// counted in `dropped()`), as a socket's own buffer would. `send_to` resolves
// a host name first (numeric addresses skip DNS) and completes once the
// datagram is handed to the system; an empty datagram is allowed.
// Errors throw `io_error` naming the address and the system's text.
//
// Thread-safety: loop thread only; one task at a time may await
// `receive_from`. Lifetime: copies share one socket, closed by `close()` or
// when the last copy is gone; nothing may outlive the loop.

#include <simul/loop/detail/counted_ref.hpp>
#include <simul/loop/detail/wait_list.hpp>
#include <simul/loop/io/io_error.hpp>
#include <simul/loop/io/socket_fd.hpp>
#include <simul/loop/task.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace simul {

/// A received datagram and where it came from.
struct datagram {
  std::string data;
  std::string host; ///< the sender's numeric address
  int port = 0;     ///< the sender's port
};

/// Options of `create_datagram_endpoint`.
struct datagram_options {
  std::size_t max_queued = 1024; ///< datagrams kept for receive_from before dropping
  bool reuse_address = false;    ///< SO_REUSEADDR
  bool broadcast = false;        ///< SO_BROADCAST
};

namespace detail {
class udp_state;
} // namespace detail

/// A bound UDP socket. See the file comment.
///
/// Thread-safety: loop thread only. Lifetime: copies share the socket.
class datagram_endpoint {
 public:
  datagram_endpoint() noexcept = default;
  explicit datagram_endpoint(detail::udp_state* s) noexcept : m_state(s) {} // internal: shares `s`

  /// Sends `data` to `host:port`. Throws `io_error` / `dns_error`.
  [[nodiscard]] task<void> send_to(std::string data, std::string host, int port);
  /// The next datagram (waits for one). Throws `io_error` after a receive
  /// error, `simul::error` once closed.
  [[nodiscard]] task<datagram> receive_from();
  /// Datagrams waiting for `receive_from`.
  [[nodiscard]] std::size_t queued() const;
  /// Datagrams dropped because the queue was full.
  [[nodiscard]] std::uint64_t dropped() const;
  /// The local port.
  [[nodiscard]] int port() const;
  /// "host:port" of the local side.
  [[nodiscard]] std::string sockname() const;
  /// Closes the socket; a waiting `receive_from` throws. Idempotent.
  void close();
  [[nodiscard]] bool is_closing() const;

  explicit operator bool() const noexcept { return static_cast<bool>(m_state); }

 private:
  friend task<datagram_endpoint> create_datagram_endpoint(std::string, int, datagram_options);
  friend task<datagram_endpoint> create_datagram_endpoint(socket_fd, datagram_options);
  detail::udp_state& state() const;
  detail::counted_ref<detail::udp_state> m_state;
};

/// Binds a UDP socket to `local_host:local_port` (port 0: a free port).
/// Throws `io_error` (address in use...) or `dns_error`.
[[nodiscard]] task<datagram_endpoint> create_datagram_endpoint(std::string local_host = "0.0.0.0", int local_port = 0,
                                                               datagram_options options = {});

/// Adopts an unconnected UDP socket, bound or not (asyncio's
/// `create_datagram_endpoint(sock=...)`); see <simul/loop/io/socket_fd.hpp>.
/// `broadcast` is applied; `reuse_address` is refused (it must be set
/// before the socket is bound).
[[nodiscard]] task<datagram_endpoint> create_datagram_endpoint(socket_fd sock, datagram_options options = {});

} // namespace simul
