#pragma once

// TLS for streams: asyncio's `ssl=` on open_connection and start_server,
// with OpenSSL underneath.
//
//   const auto client = simul::ssl_context::client();
//   auto [reader, writer] = co_await simul::open_connection("example.org", 443, {.ssl = &client});
//
//   auto tls = simul::ssl_context::server();
//   tls.load_cert_chain("server.pem", "server.key");
//   auto srv = co_await simul::start_server(handler, "0.0.0.0", 8443, {.ssl = &tls});
//
// A client context (`ssl_context::client()`, Python's
// `ssl.create_default_context()`) trusts the system's certificate
// authorities, requires the server's certificate and checks that it is for
// the name connected to; a server context (`ssl_context::server()`) needs its
// certificate chain and key and asks nothing of clients unless told to. Both
// speak TLS 1.2 and 1.3 only.
//
// With a context in the options, `open_connection` returns once the
// handshake is done, and a server runs its handler only for clients whose
// handshake succeeded (the others are dropped, as asyncio drops them). The
// reader and writer then carry plaintext, as for a plain connection.
// Failures throw `ssl_error`, or `ssl_certificate_error` when a certificate
// was refused (see <simul/loop/io/io_error.hpp>); a handshake that takes longer
// than `ssl_handshake_timeout` throws `timeout_error`.
//
// Thread-safety: set a context up (load_*, set_*) before it is used; from
// then on, any number of loops on any threads may use it at once. Lifetime:
// copies share one context (Python passes the same SSLContext object around);
// connections keep it alive as long as they need it.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace simul {

/// How a context treats the peer's certificate (Python's ssl.CERT_*).
enum class ssl_verify : unsigned char {
  none,     ///< not requested; not checked (CERT_NONE)
  optional, ///< checked if the peer sends one; a server does not require it (CERT_OPTIONAL)
  required, ///< the peer must send one that verifies (CERT_REQUIRED)
};

/// An OpenSSL context: certificates, trust and verification for TLS
/// connections (Python's ssl.SSLContext). See the file comment.
class ssl_context {
 public:
  /// For connecting: verifies the server against the system's trusted
  /// authorities and checks its name (ssl.create_default_context()).
  [[nodiscard]] static ssl_context client();
  /// For serving: load a certificate chain and key before use.
  [[nodiscard]] static ssl_context server();

  /// True for a server context.
  [[nodiscard]] bool is_server() const noexcept;

  /// This side's certificate chain (PEM, leaf first) and private key (PEM;
  /// empty: the key is in `certfile`). Throws `io_error` if a file cannot be
  /// read, `ssl_error` if it is not a certificate or key, or the key does
  /// not match the certificate.
  void load_cert_chain(const std::string& certfile, const std::string& keyfile = {});
  /// Trusts the authorities in the PEM file `cafile` as well.
  void load_verify_locations(const std::string& cafile);
  /// Trusts the PEM certificates in `pem` as well (Python's `cadata`).
  /// Throws `ssl_error` if it holds none.
  void load_verify_data(std::string_view pem);
  /// Trusts the system's authorities as well (a client context already does).
  void set_default_verify_paths();

  /// Whether the peer's certificate is requested and checked. `none` while
  /// `check_hostname()` is true throws `simul::error` (as Python does).
  void set_verify_mode(ssl_verify mode);
  [[nodiscard]] ssl_verify verify_mode() const noexcept;
  /// Whether a client checks that the server's certificate is for the name
  /// it connected to (`server_hostname`, else the host). Turning it on sets
  /// the verify mode to `required` if it was `none`.
  void set_check_hostname(bool check);
  [[nodiscard]] bool check_hostname() const noexcept;

  /// The application protocols this side speaks, most preferred first
  /// (Python's `set_alpn_protocols`, e.g. {"h2", "http/1.1"}): a client
  /// offers them in its hello; a server picks the first of its own that the
  /// client offers, and with none in common picks nothing and the handshake
  /// goes on. The choice is `get_extra_info("alpn_protocol")` on both sides
  /// ("" for none). An empty list offers nothing. Throws `simul::error` for a
  /// name that is empty or longer than 255 bytes.
  void set_alpn_protocols(const std::vector<std::string>& protocols);

  /// The server-name callback of a server context (Python's
  /// `sni_callback`): during each handshake it gets the name the client
  /// asked for in its hello (SNI; "" if none) and returns another server
  /// context to serve that connection with, its certificate chain and key
  /// (and its ALPN list), or nullopt to keep this one. Virtual hosting:
  /// one listener, a certificate per name. Whether a client must present a
  /// certificate stays this context's setting (OpenSSL's SSL_set_SSL_CTX
  /// keeps the verify mode), so give both the same. It runs on the thread
  /// of the loop doing the handshake: a context shared by loops on several
  /// threads may call it from each at once. If it throws (or returns a client
  /// context), that handshake fails with an internal_error alert to the
  /// client, and the exception is reported through the loop's exception
  /// handler. It runs inside the handshake: keep it quick. The context keeps
  /// the callback, and with it whatever the
  /// callback holds: a callback holding this very context keeps it alive for
  /// good. An empty function removes it. Throws `simul::error` on a client
  /// context.
  void set_sni_callback(std::function<std::optional<ssl_context>(std::string_view server_name)> callback);

  /// The `SSL_CTX*`, for settings this class does not offer (ciphers,
  /// session caching). Set them before the context is used.
  [[nodiscard]] void* native_handle() const noexcept;

  struct impl;

  /// The shared context (for simul's own sources).
  [[nodiscard]] const std::shared_ptr<impl>& internals() const noexcept { return m_impl; }

 private:
  explicit ssl_context(std::shared_ptr<impl> i) noexcept : m_impl(std::move(i)) {}
  std::shared_ptr<impl> m_impl;
};

} // namespace simul
