#pragma once

// The connection behind a stream_reader / stream_writer pair.
//
// Ownership: the state is shared by the reader/writer handles (and the
// awaitables, through their handles), counted in `users`, and by its libuv
// handle while the handle is open. It is freed when both are gone: the last
// user starts a graceful close (flush, then uv_close) and the close callback
// frees the handle, or the close callback comes first and the last user frees
// the state. If the loop closed first (it closes every handle itself, without
// our callback), the last user frees the handle memory too.

#include "io/io_internal.hpp"

#include <simul/loop/io/stream.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace simul::detail {

class tls_session;

class stream_state {
 public:
  enum class kind : std::uint8_t { tcp, pipe };

  /// A state with a fresh, initialised handle (not yet connected).
  stream_state(event_loop& loop, kind k, std::size_t limit);
  stream_state(const stream_state&) = delete;
  stream_state& operator=(const stream_state&) = delete;

  /// The handle is connected: start reading (and remember the peer's name).
  void on_connected();

  [[nodiscard]] uv_stream_t* stream() const noexcept { return m_handle; }
  [[nodiscard]] event_loop& loop() const noexcept { return *m_loop; }
  [[nodiscard]] kind type() const noexcept { return m_kind; }
  [[nodiscard]] const std::string& peer() const noexcept { return m_peer; }
  void set_peer(std::string peer) { m_peer = std::move(peer); }

  // ---- reading ----
  [[nodiscard]] std::size_t buffered() const noexcept { return m_buf.size() - m_pos; }
  [[nodiscard]] const char* data() const noexcept { return m_buf.data() + m_pos; }
  [[nodiscard]] bool eof() const noexcept { return m_eof; }
  [[nodiscard]] int read_error() const noexcept { return m_read_error; }
  [[nodiscard]] std::size_t limit() const noexcept { return m_limit; }
  /// Takes `n` buffered bytes.
  std::string take(std::size_t n);
  wait_list& read_waiters() noexcept { return m_read_waiters; }
  /// Starts reading again if flow control paused it.
  void resume_reading() noexcept { start_reading(); }
  [[noreturn]] void throw_read_error() const;

  // ---- writing ----
  void write(const char* data, std::size_t size);
  [[nodiscard]] std::size_t queued() const noexcept { return m_queued; }
  [[nodiscard]] std::size_t high_water() const noexcept { return m_high; }
  void set_limits(std::size_t high, std::size_t low) noexcept {
    m_high = high;
    m_low = low;
  }
  [[nodiscard]] int write_error() const noexcept { return m_write_error; }
  [[nodiscard]] bool eof_requested() const noexcept { return m_eof_requested; }
  [[noreturn]] void throw_write_error() const;
  wait_list& drain_waiters() noexcept { return m_drain_waiters; }
  void write_eof();

  // ---- TLS (see tls.hpp) ----
  /// From now on the stream's bytes go through `session`: what the socket
  /// gives is decrypted into the buffer, what is written is encrypted; bytes
  /// buffered and not read yet are the first the session gets. Starts the
  /// handshake (a client sends its hello now).
  void start_tls(std::unique_ptr<tls_session> session);
  [[nodiscard]] tls_session* tls() const noexcept { return m_tls.get(); }
  /// True once the handshake is done, failed, or cannot finish any more.
  [[nodiscard]] bool handshake_settled() const noexcept;
  /// After the handshake settled: returns if it succeeded, else throws why.
  void check_handshake() const;
  wait_list& handshake_waiters() noexcept { return m_handshake_waiters; }

  // ---- closing ----
  void close();
  void abort();
  [[nodiscard]] bool closing() const noexcept { return m_closing; }
  [[nodiscard]] bool closed() const noexcept { return m_closed; }
  wait_list& closed_waiters() noexcept { return m_closed_waiters; }

  // ---- ownership ----
  void acquire() noexcept { ++m_users; }
  void release() noexcept;

 private:
  ~stream_state();

  static void on_alloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void on_write(uv_write_t* req, int status) noexcept;
  static void on_shutdown(uv_shutdown_t* req, int status) noexcept;
  static void on_close(uv_handle_t* h) noexcept;

  void start_reading() noexcept;
  void stop_reading() noexcept;
  void send_raw(const char* data, std::size_t size);
  void queue_write(const char* data, std::size_t size);
  void receive_tls(const char* data, std::size_t size) noexcept;
  /// Throws the TLS session's failure, if it failed.
  void rethrow_tls_failure() const;
  void flush_tls() noexcept;
  void set_failed(int code) noexcept;
  /// The socket's pending error (SO_ERROR) as a libuv code, 0 if none.
  [[nodiscard]] int pending_socket_error() const noexcept;
  void maybe_close_handle() noexcept;
  void notify_reader() noexcept;
  void free_handle_memory() noexcept;

  event_loop* m_loop;
  uv_stream_t* m_handle = nullptr;
  kind m_kind;
  std::string m_peer;
  unsigned m_users = 0;
  bool m_handle_alive = true; // the handle (and its close callback) still refers to us

  std::string m_buf;
  std::size_t m_pos = 0;
  std::size_t m_limit;
  bool m_eof = false;
  bool m_reading = false;
  int m_read_error = 0;
  wait_list m_read_waiters;

  std::size_t m_queued = 0;
  std::size_t m_high = 64 * 1024;
  std::size_t m_low = 16 * 1024;
  unsigned m_pending_writes = 0;
  int m_write_error = 0;
  bool m_eof_requested = false;
  std::size_t m_dropped = 0; // bytes abort() threw away
  wait_list m_drain_waiters;

  std::unique_ptr<tls_session> m_tls;
  wait_list m_handshake_waiters;

  bool m_closing = false;
  bool m_close_started = false;
  bool m_closed = false;
  wait_list m_closed_waiters;
};

/// Waits for the TLS handshake `ref` started, within `limit`. On failure
/// the connection is closed (after the alert OpenSSL queued, if any) and the
/// error thrown: ssl_error, ssl_certificate_error, connection_error, or
/// timeout_error.
task<void> finish_handshake(stream_ref ref, std::chrono::milliseconds limit);

// Adopted sockets (<simul/loop/io/socket_fd.hpp>), for connections and servers.

/// Gives the fresh handle `h` of kind `k` the adopted descriptor `fd`. libuv
/// takes it only on success (EEXIST: the loop already watches it).
inline int open_adopted(stream_state::kind k, uv_stream_t* h, int fd) {
  return k == stream_state::kind::tcp ? uv_tcp_open(reinterpret_cast<uv_tcp_t*>(h), fd)
                                      : uv_pipe_open(reinterpret_cast<uv_pipe_t*>(h), fd);
}

inline stream_state::kind kind_of(const adopted_socket& info) noexcept {
  return info.family == AF_UNIX ? stream_state::kind::pipe : stream_state::kind::tcp;
}

/// What an adopted socket is called in messages: its address, else "fd N".
inline std::string shown_name(const std::string& address, int fd) {
  return address.empty() ? "fd " + std::to_string(fd) : address;
}

} // namespace simul::detail
