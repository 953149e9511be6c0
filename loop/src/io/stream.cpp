// Streams (<simul/loop/io/stream.hpp>): the connection's state, its life
// (made, failed, closed, freed) and its TLS. Reading is in
// stream_reader.cpp, writing in stream_writer.cpp.

#include "io/stream_state.hpp"

#include "io/counted_ref_impl.hpp"
#include "io/tls.hpp"

#include <simul/loop/timeout.hpp>

#include <string_view>

namespace simul::detail {

template class counted_ref<stream_state>;

// ---- stream_state ----

stream_state::stream_state(event_loop& loop, kind k, std::size_t limit) : m_loop(&loop), m_kind(k), m_limit(limit) {
  if (limit == 0) {
    throw error("stream: the reader's limit must be positive");
  }
  if (k == kind::tcp) {
    auto* tcp = new uv_tcp_t();
    uv_tcp_init(uv_loop(loop), tcp);
    m_handle = reinterpret_cast<uv_stream_t*>(tcp);
  } else {
    auto* pipe = new uv_pipe_t();
    uv_pipe_init(uv_loop(loop), pipe, 0);
    m_handle = reinterpret_cast<uv_stream_t*>(pipe);
  }
  m_handle->data = this;
}

stream_state::~stream_state() = default;

void stream_state::on_connected() { start_reading(); }

void stream_state::free_handle_memory() noexcept {
  if (m_kind == kind::tcp) {
    delete reinterpret_cast<uv_tcp_t*>(m_handle);
  } else {
    delete reinterpret_cast<uv_pipe_t*>(m_handle);
  }
  m_handle = nullptr;
}

void stream_state::release() noexcept {
  if (--m_users > 0) {
    return;
  }
  if (!m_handle_alive) {
    delete this;
    return;
  }
  if (m_loop->is_closed()) {
    // The loop closed our handle itself (without our callback): libuv is done
    // with its memory.
    free_handle_memory();
    m_handle_alive = false;
    delete this;
    return;
  }
  close(); // the close callback frees us
}

int stream_state::pending_socket_error() const noexcept {
  uv_os_fd_t fd{};
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(m_handle), &fd) != 0) {
    return 0;
  }
  int err = 0;
  socklen_t size = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &size) != 0) {
    return 0; // not a socket (a pipe): no error pending
  }
  return err != 0 ? uv_translate_sys_error(err) : 0;
}

void stream_state::set_failed(int code) noexcept {
  if (m_write_error == 0) {
    m_write_error = code;
  }
  m_drain_waiters.signal_all();
}

void stream_state::close() {
  if (m_closing) {
    return;
  }
  m_closing = true;
  stop_reading();
  if (m_tls && m_handle_alive && !m_close_started && m_write_error == 0) {
    m_tls->close_notify(); // the end of our data, so the peer can tell it from a cut
    flush_tls();
  }
  maybe_close_handle();
}

void stream_state::maybe_close_handle() noexcept {
  if (m_close_started || !m_handle_alive || m_pending_writes > 0) {
    return;
  }
  m_close_started = true;
  stop_reading();
  uv_close(reinterpret_cast<uv_handle_t*>(m_handle), &on_close);
}

void stream_state::abort() {
  m_closing = true;
  if (m_close_started || !m_handle_alive) {
    return;
  }
  if (m_queued > 0 && m_write_error == 0) {
    // The queue is dropped: drain() must not report it written.
    m_dropped = m_queued;
    set_failed(UV_ECONNABORTED);
  }
  m_close_started = true;
  stop_reading();
  if (m_kind == kind::tcp && uv_tcp_close_reset(reinterpret_cast<uv_tcp_t*>(m_handle), &on_close) == 0) {
    return;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(m_handle), &on_close);
}

void stream_state::on_close(uv_handle_t* h) noexcept {
  auto* self = static_cast<stream_state*>(h->data);
  self->free_handle_memory();
  self->m_handle_alive = false;
  self->m_closing = true;
  self->m_closed = true;
  self->m_reading = false;
  self->m_eof = true;
  self->notify_reader();
  self->m_drain_waiters.signal_all();
  self->m_closed_waiters.signal_all();
  self->m_handshake_waiters.signal_all();
  if (self->m_users == 0) {
    delete self;
  }
}

// ---- TLS ----

void stream_state::start_tls(std::unique_ptr<tls_session> session) {
  // What arrived and was not read yet is the peer's first TLS bytes (an
  // upgraded connection's hello, sent right after the plaintext before it).
  std::string early = m_buf.substr(m_pos);
  m_buf.clear();
  m_pos = 0;
  m_tls = std::move(session);
  receive_tls(early.data(), early.size());
  start_reading(); // flow control may have paused it while `early` was buffered
  notify_reader();
}

void stream_state::receive_tls(const char* data, std::size_t size) noexcept {
  const auto before = m_tls->current();
  tls_session::state now = before;
  try {
    now = m_tls->receive({data, size}, m_buf);
  } catch (...) {
    m_tls->fail(std::current_exception()); // out of memory for the plaintext
    now = tls_session::state::failed;
  }
  flush_tls(); // handshake messages, alerts, key updates
  if (now == tls_session::state::failed || now == tls_session::state::closed) {
    // A failed session reads as an error after the buffered data; the
    // peer's close_notify is its EOF.
    if (now == tls_session::state::failed && m_read_error == 0) {
      m_read_error = UV_EPROTO;
      set_failed(UV_EPROTO);
    }
    m_eof = true;
    stop_reading();
  }
  if (now != before) {
    m_handshake_waiters.signal_all();
  }
}

void stream_state::flush_tls() noexcept {
  try {
    const auto out = m_tls->take_output();
    if (!out.empty()) {
      send_raw(out.data(), out.size());
    }
  } catch (...) {
    // send_raw records a socket error before it throws; what is left is
    // memory. Either way the next read or write reports it.
    if (m_write_error == 0) {
      set_failed(UV_ENOMEM);
    }
  }
}

namespace {

/// Waits until a stream's TLS handshake settled; throws if it failed.
class handshake_awaiter final : public parked_waiter {
 public:
  explicit handshake_awaiter(stream_ref s) : m_stream(std::move(s)) {}
  bool await_ready() const noexcept { return m_stream.get()->handshake_settled(); }
  bool await_suspend(std::coroutine_handle<> h) { return park(m_stream.get()->handshake_waiters(), h); }
  void await_resume() {
    if (m_task != nullptr) {
      check_cancel();
    }
    m_stream.get()->check_handshake();
  }

 private:
  stream_ref m_stream;
};

task<void> await_handshake(stream_ref ref) { co_await handshake_awaiter(std::move(ref)); }

} // namespace

task<void> finish_handshake(stream_ref ref, std::chrono::milliseconds limit) {
  auto& s = *ref.get();
  try {
    co_await simul::timeout(limit)(await_handshake(ref));
  } catch (const timeout_error&) {
    s.abort();
    throw timeout_error("TLS handshake with " + s.peer() + ": no answer within " + std::to_string(limit.count()) +
                        " ms");
  } catch (...) {
    s.close();
    throw;
  }
}

bool stream_state::handshake_settled() const noexcept {
  return m_tls == nullptr || m_tls->current() != tls_session::state::handshaking || m_eof || m_closed;
}

void stream_state::check_handshake() const {
  rethrow_tls_failure();
  if (m_tls == nullptr || m_tls->current() != tls_session::state::handshaking) {
    return;
  }
  if (m_read_error != 0) {
    throw_read_error(); // reset by the peer...
  }
  throw connection_error(ECONNRESET, "TLS handshake with " + m_peer + ": the peer closed the connection", m_peer);
}

void stream_state::rethrow_tls_failure() const {
  if (m_tls != nullptr && m_tls->current() == tls_session::state::failed) {
    std::rethrow_exception(m_tls->failure());
  }
}

} // namespace simul::detail
