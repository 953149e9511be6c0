#pragma once

// The errors of the loop's I/O: streams, servers, DNS, UDP, files, subprocesses.
//
// They follow Python's OSError family. `io_error` is any failed system call:
// it carries the system's error number (`code()`, an errno value such as
// ECONNREFUSED) and the address, path or program it was about (`address()`),
// and its message names both, with the system's text: "connect to
// 127.0.0.1:9: connection refused (ECONNREFUSED)". `connection_error` is the
// part of that family about a connection (refused, reset by the peer, broken
// pipe, write after close); `dns_error` is a failed name lookup
// (socket.gaierror); `ssl_error` is a failed TLS handshake or record
// (ssl.SSLError), and `ssl_certificate_error` the peer's certificate refused
// (ssl.SSLCertVerificationError). Two errors are about the data on a stream rather than
// the system: `incomplete_read_error` (EOF came before `readexactly` got its
// bytes; the partial data travels with it) and `limit_overrun_error` (a line
// or separated chunk would pass the reader's limit; the data stays buffered).
//
// Thread-safety: plain values; may be copied and rethrown on any thread.

#include <simul/core/error.hpp>

#include <cerrno>
#include <cstddef>
#include <string>
#include <utility>

namespace simul {

/// A system call of the loop's I/O failed (OSError).
class io_error : public error {
 public:
  /// `code` is an errno value (positive); `message` is the whole text.
  io_error(int code, const std::string& message, std::string address)
      : error(message), m_code(code), m_address(std::move(address)) {}

  /// The system's error number (an errno value, positive), or for
  /// `dns_error` the getaddrinfo error (an EAI_* value).
  [[nodiscard]] int code() const noexcept { return m_code; }
  /// The address ("host:port"), socket path, file path or program concerned.
  [[nodiscard]] const std::string& address() const noexcept { return m_address; }

 private:
  int m_code;
  std::string m_address;
};

/// A connection failed: refused, reset by the peer, broken pipe, aborted, or
/// written to after it was closed (ConnectionError).
class connection_error : public io_error {
 public:
  using io_error::io_error;
};

/// A name lookup failed (socket.gaierror); `code()` is the EAI_* value.
class dns_error : public io_error {
 public:
  using io_error::io_error;
};

/// TLS failed (ssl.SSLError): the handshake (no common protocol or cipher,
/// the peer does not speak TLS, an alert from the peer), a corrupt record, or
/// a certificate or key that could not be loaded. `code()` is EPROTO (ENOENT
/// and the like when a file could not be read); `reason()` is OpenSSL's text
/// ("wrong version number", "tlsv1 alert unknown ca").
class ssl_error : public io_error {
 public:
  ssl_error(const std::string& message, std::string address, std::string reason, int code = EPROTO)
      : io_error(code, message, std::move(address)), m_reason(std::move(reason)) {}

  /// OpenSSL's reason for the failure.
  [[nodiscard]] const std::string& reason() const noexcept { return m_reason; }

 private:
  std::string m_reason;
};

/// The peer's certificate was refused (ssl.SSLCertVerificationError): not
/// signed by a trusted authority, expired, or not for the name connected to.
/// `verify_code()` is OpenSSL's X509_V_ERR_* value.
class ssl_certificate_error : public ssl_error {
 public:
  ssl_certificate_error(const std::string& message, std::string address, std::string reason, long verify_code)
      : ssl_error(message, std::move(address), std::move(reason)), m_verify_code(verify_code) {}

  /// OpenSSL's verification result (X509_V_ERR_*), never X509_V_OK.
  [[nodiscard]] long verify_code() const noexcept { return m_verify_code; }

 private:
  long m_verify_code;
};

/// The stream ended before `readexactly(n)` (or `readuntil`) got what it
/// needed (asyncio.IncompleteReadError). The bytes that did arrive are in
/// `partial()` and are no longer buffered in the reader.
class incomplete_read_error : public error {
 public:
  incomplete_read_error(std::string partial, std::size_t expected)
      : error(describe(partial.size(), expected)), m_partial(std::move(partial)), m_expected(expected) {}

  /// The bytes read before the end of the stream.
  [[nodiscard]] const std::string& partial() const noexcept { return m_partial; }
  /// How many bytes were expected (0 when a separator was expected).
  [[nodiscard]] std::size_t expected() const noexcept { return m_expected; }

 private:
  static std::string describe(std::size_t got, std::size_t expected) {
    if (expected == 0) {
      return std::to_string(got) + " bytes read before the end of the stream, separator not found";
    }
    return std::to_string(got) + " bytes read on a total of " + std::to_string(expected) + " expected bytes";
  }
  std::string m_partial;
  std::size_t m_expected;
};

/// A line or separated chunk would pass the reader's limit
/// (asyncio.LimitOverrunError). Nothing was consumed: the data stays buffered
/// and `read(n)` can still take it.
class limit_overrun_error : public error {
 public:
  limit_overrun_error(const std::string& message, std::size_t consumed) : error(message), m_consumed(consumed) {}

  /// How many buffered bytes were examined (the separator's offset when found).
  [[nodiscard]] std::size_t consumed() const noexcept { return m_consumed; }

 private:
  std::size_t m_consumed;
};

} // namespace simul
