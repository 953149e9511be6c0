#pragma once

// Streams: the two halves of a TCP or Unix-domain connection, as asyncio's
// StreamReader and StreamWriter.
//
// `open_connection` (see <simul/loop/io/connection.hpp>) and a server's handler give
// a `stream_reader` and a `stream_writer` over one connection. Data is
// `std::string` used as bytes, like Python's `bytes`.
//
// Reading. The loop reads from the socket as data arrives and keeps it in the
// reader's buffer; the reader's coroutines take from that buffer:
// `read(n)` (up to n bytes, "" at EOF; `read()` everything until EOF),
// `readexactly(n)` (`incomplete_read_error` with the partial data at EOF),
// `readline()` and `readuntil(sep)`. The buffer is bounded by the reader's
// limit (64 KiB by default): the loop stops reading from the socket while
// more than twice the limit is buffered, and `readuntil` throws
// `limit_overrun_error` when no separator shows up within the limit, leaving
// the data buffered. A connection error (reset by the peer) is thrown by the
// read that finds the buffer empty: data that arrived before it is read first.
// One task at a time may wait on a reader.
//
// Writing. `write(data)` never blocks: it sends what the socket takes at once
// and queues the rest. `co_await drain()` suspends while more than the high
// water mark (64 KiB by default) is queued, until the queue is back under the
// low water mark (16 KiB), so a writer that drains after writing cannot grow
// memory without bound when its peer reads slowly. `close()` closes the
// connection once the queue is flushed; `wait_closed()` waits for that.
// Writing to a closed stream, or after the connection failed, throws
// `connection_error`.
//
// TLS (see <simul/loop/io/ssl.hpp>): the same reader and writer, carrying
// plaintext. A corrupt record fails the stream with `ssl_error` (after the
// data that arrived before it is read); the peer's close_notify is its EOF,
// and `close()` sends ours. `write_eof()` is not possible over TLS.
// `start_tls()` upgrades a plain connection (STARTTLS).
//
// Cancellation: every `co_await` here is a cancellation point; a cancelled
// read consumes nothing (the data stays buffered).
//
// Thread-safety: loop thread only. Lifetime: readers and writers are cheap
// handles sharing the connection; the connection closes itself (flushing
// what is queued) when the last reader and writer referring to it are gone.
// They must not outlive their loop.

#include <simul/loop/detail/counted_ref.hpp>
#include <simul/loop/detail/wait_list.hpp>
#include <simul/loop/io/io_error.hpp>
#include <simul/loop/io/ssl.hpp>
#include <simul/loop/task.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace simul {

class event_loop;

namespace detail {

class stream_state;

/// Shared, counted reference to a connection (loop thread only).
using stream_ref = counted_ref<stream_state>;

/// The awaitable of the reader's coroutines. Consumes data only when it resumes.
class stream_read_awaiter final : public parked_waiter {
 public:
  enum class kind : std::uint8_t { some, all, exactly, until, line };
  stream_read_awaiter(stream_ref s, kind k, std::size_t n, std::string sep)
      : m_stream(std::move(s)), m_kind(k), m_n(n), m_sep(std::move(sep)) {}

  bool await_ready();
  bool await_suspend(std::coroutine_handle<> h);
  std::string await_resume();

  /// Called by the stream when data, EOF or an error arrived: true if this
  /// read can complete now.
  [[nodiscard]] bool satisfied() noexcept;

 private:
  /// The until/line read on resuming: up to and with the separator, or what
  /// the stream's end or limit allow. `b`: the bytes buffered.
  std::string take_until(stream_state& s, std::size_t b);
  /// True if `buffered` bytes without the separator are too many to wait on.
  [[nodiscard]] bool overrun(std::size_t buffered) const noexcept;

  stream_ref m_stream;
  kind m_kind;
  std::size_t m_n;
  std::string m_sep;
  std::size_t m_search_from = 0; // buffered bytes already searched for the separator
};

/// The awaitable of `drain()` and `wait_closed()`.
class stream_event_awaiter final : public parked_waiter {
 public:
  enum class kind : std::uint8_t { drain, closed };
  stream_event_awaiter(stream_ref s, kind k) : m_stream(std::move(s)), m_kind(k) {}

  bool await_ready();
  bool await_suspend(std::coroutine_handle<> h);
  void await_resume();

 private:
  stream_ref m_stream;
  kind m_kind;
};

} // namespace detail

/// The reading half of a connection (asyncio.StreamReader). See the file comment.
///
/// Thread-safety: loop thread only; one task at a time may await a read.
/// Lifetime: shares the connection with its writer; must not outlive the loop.
class stream_reader {
 public:
  /// An empty reader (not connected).
  stream_reader() noexcept = default;
  explicit stream_reader(detail::stream_ref s) noexcept : m_stream(std::move(s)) {}

  /// Up to `n` bytes: what is buffered, or the next data to arrive; "" at EOF
  /// (and for n == 0). Throws `connection_error` if the connection failed and
  /// nothing is left buffered.
  [[nodiscard]] detail::stream_read_awaiter read(std::size_t n);
  /// Everything until EOF.
  [[nodiscard]] detail::stream_read_awaiter read();
  /// Exactly `n` bytes; at EOF throws `incomplete_read_error` with what arrived.
  [[nodiscard]] detail::stream_read_awaiter readexactly(std::size_t n);
  /// A line ending with "\n" (kept); at EOF, what is left (maybe ""). Throws
  /// `limit_overrun_error` (data stays buffered) if no "\n" is within the limit.
  [[nodiscard]] detail::stream_read_awaiter readline();
  /// Data up to and including `separator` (not empty). At EOF throws
  /// `incomplete_read_error` with the rest; past the limit throws
  /// `limit_overrun_error` and the data stays buffered.
  [[nodiscard]] detail::stream_read_awaiter readuntil(std::string separator = "\n");

  /// True once EOF was received and the buffer is empty.
  [[nodiscard]] bool at_eof() const;
  /// The reader's limit in bytes.
  [[nodiscard]] std::size_t limit() const;
  /// How many bytes are buffered now.
  [[nodiscard]] std::size_t buffered() const;

  explicit operator bool() const noexcept { return static_cast<bool>(m_stream); }

 private:
  detail::stream_state& state() const;
  detail::stream_ref m_stream;
};

/// The writing half of a connection (asyncio.StreamWriter). See the file comment.
///
/// Thread-safety: loop thread only. Lifetime: shares the connection with its
/// reader; must not outlive the loop.
class stream_writer {
 public:
  /// An empty writer (not connected).
  stream_writer() noexcept = default;
  explicit stream_writer(detail::stream_ref s) noexcept : m_stream(std::move(s)) {}

  /// Sends `data` now or queues it; never blocks. Throws `connection_error`
  /// after `close()` or once the connection failed.
  void write(std::string_view data);
  /// Writes each string of `lines` in order (nothing is added between them).
  template <class Range>
  void writelines(const Range& lines) {
    for (const auto& line : lines) {
      write(std::string_view(line));
    }
  }
  /// Suspends while more than the high water mark is queued, until the queue
  /// is under the low water mark. Throws `connection_error` if the connection
  /// failed (or closed with data still queued).
  [[nodiscard]] detail::stream_event_awaiter drain();
  /// Sets the water marks (asyncio's set_write_buffer_limits); `low`
  /// defaults to high / 4. Throws `simul::error` if low > high.
  void set_write_buffer_limits(std::size_t high = 64 * 1024, std::optional<std::size_t> low = std::nullopt);
  /// Bytes queued and not yet taken by the socket.
  [[nodiscard]] std::size_t get_write_buffer_size() const;

  /// True if `write_eof()` is possible (TCP and pipes: yes; TLS: no).
  [[nodiscard]] bool can_write_eof() const;
  /// Shuts down the sending side once the queue is flushed; the peer reads
  /// EOF. Throws `simul::error` on a TLS stream, which cannot half-close.
  void write_eof();
  /// Closes the connection once the queue is flushed. Idempotent.
  void close();
  /// Closes at once, dropping what is queued; TCP sends a reset (RST).
  void abort();
  /// True once `close()`/`abort()` was called or the connection closed.
  [[nodiscard]] bool is_closing() const;
  /// Suspends until the connection is closed. Throws `connection_error` if it
  /// closed with an error (reset by the peer...).
  [[nodiscard]] detail::stream_event_awaiter wait_closed();

  /// Upgrades the connection to TLS in place (asyncio's
  /// StreamWriter.start_tls; STARTTLS): this side is the client or the
  /// server as `context` is. Returns once the handshake is done; from then
  /// on this writer and the connection's reader carry plaintext over TLS.
  /// Bytes the peer sent after the plaintext the reader consumed (its hello,
  /// sent at once) are handed to TLS, not lost. `server_hostname` is the
  /// name a client sends and checks (needed when the context checks names).
  /// Throws `simul::error` if the stream already speaks TLS or write_eof()
  /// was called, `connection_error` if it is closed, and what a handshake
  /// throws (ssl_error, ssl_certificate_error, timeout_error), after which
  /// the connection is closed.
  [[nodiscard]] task<void> start_tls(ssl_context context, std::string_view server_hostname = {},
                                     std::chrono::milliseconds ssl_handshake_timeout = std::chrono::seconds(60));

  /// "peername" or "sockname": "host:port" ("[v6]:port") for TCP, the path
  /// for Unix sockets; "fileno": the descriptor. Over TLS also "cipher"
  /// ("TLS_AES_256_GCM_SHA384"), "ssl_version" ("TLSv1.3"), "peercert"
  /// (the peer certificate's subject, RFC 2253: "CN=localhost"; "" if it
  /// sent none), "alpn_protocol" (the protocol ALPN chose: "h2"; "" for
  /// none) and "server_name" (the name the client sent in its hello, SNI;
  /// "" for none). "" when unknown.
  [[nodiscard]] std::string get_extra_info(std::string_view name) const;

  explicit operator bool() const noexcept { return static_cast<bool>(m_stream); }

 private:
  detail::stream_state& state() const;
  detail::stream_ref m_stream;
};

} // namespace simul
