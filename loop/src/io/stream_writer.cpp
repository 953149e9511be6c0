// A stream's writing side: what is sent at once and what is queued, the
// writer's awaitables (drain, wait_closed), STARTTLS, and `stream_writer`'s calls.

#include "io/stream_state.hpp"

#include "io/tls.hpp"

#include <string_view>

namespace simul::detail {

namespace {

struct write_req {
  uv_write_t req{};
  stream_state* stream = nullptr;
  std::string data;
};

} // namespace

void stream_state::write(const char* data, std::size_t size) {
  if (m_closing || m_closed) {
    throw connection_error(EPIPE, "write to " + m_peer + ": the stream is closed", m_peer);
  }
  if (m_write_error != 0) {
    throw_write_error();
  }
  if (m_eof_requested) {
    throw connection_error(EPIPE, "write to " + m_peer + ": write_eof() was called", m_peer);
  }
  if (size == 0) {
    return;
  }
  if (m_tls) {
    m_tls->send({data, size});
    flush_tls();
    if (m_write_error != 0) {
      throw_write_error();
    }
    return;
  }
  send_raw(data, size);
}

void stream_state::send_raw(const char* data, std::size_t size) {
  std::size_t sent = 0;
  if (m_pending_writes == 0) {
    // Fast path: the socket takes it now, nothing is copied or queued.
    uv_buf_t buf = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(size));
    const int rc = uv_try_write(m_handle, &buf, 1);
    if (rc >= 0) {
      sent = static_cast<std::size_t>(rc);
    } else if (rc != UV_EAGAIN && rc != UV_ENOSYS) {
      set_failed(rc);
      throw_write_error();
    }
  }
  if (sent < size) {
    queue_write(data + sent, size - sent);
  }
}

void stream_state::queue_write(const char* data, std::size_t size) {
  auto* w = new write_req();
  w->stream = this;
  try {
    w->data.assign(data, size);
  } catch (...) {
    delete w;
    throw;
  }
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(size));
  const int rc = uv_write(&w->req, m_handle, &buf, 1, &on_write);
  if (rc < 0) {
    delete w;
    set_failed(rc);
    throw_write_error();
  }
  m_queued += size;
  ++m_pending_writes;
}

void stream_state::on_write(uv_write_t* req, int status) noexcept {
  auto* w = static_cast<write_req*>(req->data);
  auto* self = w->stream;
  self->m_queued -= w->data.size();
  --self->m_pending_writes;
  delete w;
  if (status < 0 && status != UV_ECANCELED) {
    self->set_failed(status);
  }
  if (self->m_queued <= self->m_low) {
    self->m_drain_waiters.signal_all();
  }
  if (self->m_closing) {
    self->maybe_close_handle();
  }
}

void stream_state::write_eof() {
  if (m_tls) {
    throw error("write_eof: a TLS stream cannot half-close (close() ends it with close_notify)");
  }
  if (m_closing || m_eof_requested) {
    return;
  }
  m_eof_requested = true;
  auto* req = new uv_shutdown_t();
  req->data = this;
  const int rc = uv_shutdown(req, m_handle, &on_shutdown);
  if (rc < 0) {
    delete req;
    set_failed(rc);
    throw_write_error();
  }
}

void stream_state::on_shutdown(uv_shutdown_t* req, int status) noexcept {
  auto* self = static_cast<stream_state*>(req->data);
  delete req;
  if (status < 0 && status != UV_ECANCELED) {
    self->set_failed(status);
  }
}

void stream_state::throw_write_error() const {
  rethrow_tls_failure();
  if (m_dropped > 0) {
    throw connection_error(ECONNABORTED,
                           "write to " + m_peer + ": abort() dropped " + std::to_string(m_dropped) + " queued bytes",
                           m_peer);
  }
  throw_io_error(m_write_error, "write to", m_peer);
}

// ---- stream_event_awaiter ----

bool stream_event_awaiter::await_ready() {
  auto& s = *m_stream.get();
  if (m_kind == kind::drain) {
    return s.write_error() != 0 || s.closed() || s.queued() <= s.high_water();
  }
  return s.closed();
}

bool stream_event_awaiter::await_suspend(std::coroutine_handle<> h) {
  auto& s = *m_stream.get();
  return park(m_kind == kind::drain ? s.drain_waiters() : s.closed_waiters(), h);
}

void stream_event_awaiter::await_resume() {
  if (m_task != nullptr) {
    check_cancel();
  }
  auto& s = *m_stream.get();
  if (s.write_error() != 0) {
    s.throw_write_error();
  }
}

} // namespace simul::detail

namespace simul {

// ---- stream_writer ----

detail::stream_state& stream_writer::state() const {
  if (!m_stream) {
    throw error("stream_writer: the writer is empty (not connected)");
  }
  return *m_stream.get();
}

void stream_writer::write(std::string_view data) { state().write(data.data(), data.size()); }

detail::stream_event_awaiter stream_writer::drain() {
  state();
  return {m_stream, detail::stream_event_awaiter::kind::drain};
}

void stream_writer::set_write_buffer_limits(std::size_t high, std::optional<std::size_t> low) {
  const auto lo = low.value_or(high / 4);
  if (lo > high) {
    throw error("set_write_buffer_limits: low (" + std::to_string(lo) + ") is above high (" + std::to_string(high) +
                ")");
  }
  state().set_limits(high, lo);
}

std::size_t stream_writer::get_write_buffer_size() const { return state().queued(); }

bool stream_writer::can_write_eof() const { return state().tls() == nullptr; }

void stream_writer::write_eof() { state().write_eof(); }
void stream_writer::close() { state().close(); }

namespace {

task<void> upgrade_to_tls(detail::stream_ref ref, ssl_context context, std::string name,
                          std::chrono::milliseconds ssl_handshake_timeout) {
  auto& s = *ref.get();
  if (s.closing() || s.closed()) {
    throw connection_error(EPIPE, "start_tls on " + s.peer() + ": the stream is closed", s.peer());
  }
  if (s.tls() != nullptr) {
    throw error("start_tls: " + s.peer() + " already speaks TLS");
  }
  if (s.eof_requested()) {
    throw error("start_tls on " + s.peer() + ": write_eof() was called");
  }
  if (!context.is_server() && name.empty() && context.check_hostname()) {
    throw error("start_tls: the context checks hostnames: give server_hostname");
  }
  s.start_tls(std::make_unique<detail::tls_session>(context, std::move(name), s.peer()));
  co_await detail::finish_handshake(ref, ssl_handshake_timeout);
}

} // namespace

// Not a coroutine: the name is copied now, so the view may end with the call.
task<void> stream_writer::start_tls(ssl_context context, std::string_view server_hostname,
                                    std::chrono::milliseconds ssl_handshake_timeout) {
  state();
  return upgrade_to_tls(m_stream, std::move(context), std::string(server_hostname), ssl_handshake_timeout);
}
void stream_writer::abort() { state().abort(); }
bool stream_writer::is_closing() const { return state().closing(); }

detail::stream_event_awaiter stream_writer::wait_closed() {
  state();
  return {m_stream, detail::stream_event_awaiter::kind::closed};
}

std::string stream_writer::get_extra_info(std::string_view name) const {
  auto& s = state();
  if (s.closed()) {
    return name == "peername" ? s.peer() : std::string();
  }
  if (name == "cipher" || name == "ssl_version" || name == "peercert" || name == "alpn_protocol" ||
      name == "server_name") {
    return s.tls() != nullptr ? s.tls()->info(name) : std::string();
  }
  auto* h = s.stream();
  if (name == "fileno") {
    uv_os_fd_t fd{};
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(h), &fd) == 0) {
      return std::to_string(fd);
    }
    return {};
  }
  const bool peer = name == "peername";
  if (!peer && name != "sockname") {
    return {};
  }
  if (s.type() == detail::stream_state::kind::tcp) {
    sockaddr_storage addr{};
    int len = sizeof addr;
    auto* tcp = reinterpret_cast<uv_tcp_t*>(h);
    const int rc = peer ? uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&addr), &len)
                        : uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr*>(&addr), &len);
    return rc == 0 ? detail::format_address(reinterpret_cast<sockaddr*>(&addr)) : std::string();
  }
  char path[1024];
  std::size_t len = sizeof path;
  auto* pipe = reinterpret_cast<uv_pipe_t*>(h);
  const int rc = peer ? uv_pipe_getpeername(pipe, path, &len) : uv_pipe_getsockname(pipe, path, &len);
  return rc == 0 ? std::string(path, len) : std::string();
}

} // namespace simul
