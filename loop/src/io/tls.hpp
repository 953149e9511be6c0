#pragma once

// One TLS connection's OpenSSL state, over memory buffers: the stream feeds
// it the bytes the socket gave and sends what it has to send. OpenSSL never
// touches the socket, so libuv keeps doing all the I/O and the stream's flow
// control, queueing and closing stay what they are without TLS. Internal.
//
// Thread-safety: loop thread only (one session per connection).

#include <simul/loop/io/ssl.hpp>

#include <exception>
#include <optional>
#include <string>
#include <string_view>

struct ssl_st;

namespace simul::detail {

class tls_session {
 public:
  /// A client session checking `hostname` (as the context says; also sent
  /// as SNI unless it is an IP address), or a server session. `peer` names
  /// the other side in error messages. Throws `ssl_error`.
  tls_session(const ssl_context& context, std::string hostname, std::string peer);
  tls_session(const tls_session&) = delete;
  tls_session& operator=(const tls_session&) = delete;
  ~tls_session();

  enum class state : unsigned char {
    handshaking, ///< not done yet
    open,        ///< the handshake is done; data flows
    closed,      ///< the peer sent close_notify: its end of the data
    failed,      ///< see failure()
  };

  /// Takes bytes from the socket (none: only make progress, as at the
  /// start), runs the handshake as far as they allow and appends the
  /// plaintext they carry to `plain`. Returns the state after that.
  state receive(std::string_view cipher, std::string& plain);
  /// Encrypts `plain` for sending (take it with `take_output`). Throws the
  /// failure if the session failed.
  void send(std::string_view plain);
  /// Queues close_notify (the end of this side's data). No-op unless open.
  void close_notify() noexcept;
  /// The bytes to send to the peer now (records, handshake messages, alerts).
  [[nodiscard]] std::string take_output();

  [[nodiscard]] state current() const noexcept { return m_state; }
  /// The error that failed the session (ssl_error / ssl_certificate_error).
  [[nodiscard]] std::exception_ptr failure() const noexcept { return m_failure; }
  /// Fails the session with `error` (the transport ended during the handshake...).
  void fail(std::exception_ptr error) noexcept;
  /// "cipher", "ssl_version", "peercert", "alpn_protocol" and "server_name"
  /// for get_extra_info; "" otherwise.
  [[nodiscard]] std::string info(std::string_view name) const;
  /// What the context's server-name callback threw, if it did (the program's
  /// error, to report, where other handshake failures are the client's).
  [[nodiscard]] std::exception_ptr callback_error() const noexcept { return m_callback_error; }
  /// Runs the context's server-name callback during the handshake; an
  /// OpenSSL SSL_TLSEXT_ERR_* result, with `alert` set on failure.
  int on_server_name(int* alert) noexcept;

 private:
  void handshake();
  void read_records(std::string& plain);
  void fail_from_openssl(int ssl_error_code, const char* during) noexcept;

  ssl_context m_context;               // keeps the SSL_CTX alive
  std::optional<ssl_context> m_chosen; // the server-name callback's choice, kept alive likewise
  std::exception_ptr m_callback_error;
  ssl_st* m_ssl = nullptr;
  std::string m_peer;
  state m_state = state::handshaking;
  std::exception_ptr m_failure;
};

} // namespace simul::detail
