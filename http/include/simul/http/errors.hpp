#pragma once

// The errors of simul::http. Every failed request throws one of them; each
// names the method and URL and the reason (libcurl's own words):
// "GET http://127.0.0.1:9/: connection failed: Failed to connect to
// 127.0.0.1 port 9 after 0 ms: Couldn't connect to server".
//
//   request_error               any failed transfer (base; derives from simul::error)
//     url_error                 a malformed URL or an unsupported scheme
//     resolve_error             the host name did not resolve
//     connect_error             the connection was refused or unreachable
//     tls_error                 the TLS handshake or the peer's certificate failed
//     redirect_error            more redirects than `max_redirects`
//     incomplete_body_error     the connection broke before the body was whole
//     status_error              raise_for_status(): a 4xx or 5xx answer
//   timeout_error               a timeout passed (derives from simul::timeout_error)
//
// Thread-safety: plain values; may be copied and rethrown on any thread.

#include <simul/core/error.hpp>

#include <string>
#include <utility>

namespace simul::http {

/// A request failed. `url()` is the URL asked for; `reason()` libcurl's text;
/// `curl_code()` libcurl's CURLcode (0 for status_error).
class request_error : public simul::error {
 public:
  request_error(const std::string& message, std::string url, std::string reason, int curl_code)
      : simul::error(message), m_url(std::move(url)), m_reason(std::move(reason)), m_curl_code(curl_code) {}
  [[nodiscard]] const std::string& url() const noexcept { return m_url; }
  [[nodiscard]] const std::string& reason() const noexcept { return m_reason; }
  [[nodiscard]] int curl_code() const noexcept { return m_curl_code; }

 private:
  std::string m_url;
  std::string m_reason;
  int m_curl_code;
};

/// The URL is malformed, or its scheme is not supported.
class url_error : public request_error {
 public:
  using request_error::request_error;
};

/// The host name did not resolve (DNS failure).
class resolve_error : public request_error {
 public:
  using request_error::request_error;
};

/// The connection could not be made (refused, unreachable).
class connect_error : public request_error {
 public:
  using request_error::request_error;
};

/// TLS failed: the handshake, or the server's certificate was not trusted.
class tls_error : public request_error {
 public:
  using request_error::request_error;
};

/// More redirects than the client's `max_redirects`.
class redirect_error : public request_error {
 public:
  using request_error::request_error;
};

/// The body was cut short: the connection closed or was reset before the
/// length announced, or the last chunk, arrived.
class incomplete_body_error : public request_error {
 public:
  using request_error::request_error;
};

/// `response::raise_for_status()` on a 4xx or 5xx answer.
class status_error : public request_error {
 public:
  status_error(const std::string& message, std::string url, int status)
      : request_error(message, std::move(url), "status " + std::to_string(status), 0), m_status(status) {}
  [[nodiscard]] int status() const noexcept { return m_status; }

 private:
  int m_status;
};

/// The request's timeout (or the connect timeout) passed. Caught by
/// `catch (const simul::timeout_error&)` like every other timeout.
class timeout_error : public simul::timeout_error {
 public:
  timeout_error(const std::string& message, std::string url) : simul::timeout_error(message), m_url(std::move(url)) {}
  [[nodiscard]] const std::string& url() const noexcept { return m_url; }

 private:
  std::string m_url;
};

} // namespace simul::http
