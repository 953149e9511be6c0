// Streams: the connection state, its reading and writing, and the reader's
// and writer's awaitables.

#include "io/stream_state.hpp"

#include "io/tls.hpp"

#include <simul/loop/timeout.hpp>

#include <algorithm>
#include <string_view>

namespace simul::detail {

namespace {

struct write_req {
  uv_write_t req{};
  stream_state* stream = nullptr;
  std::string data;
};

} // namespace

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

void stream_state::on_alloc(uv_handle_t*, std::size_t suggested, uv_buf_t* buf) noexcept {
  *buf = read_scratch(suggested);
}

void stream_state::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* self = static_cast<stream_state*>(s->data);
  if (nread > 0) {
    if (self->m_tls) {
      self->receive_tls(buf->base, static_cast<std::size_t>(nread));
    } else {
      try {
        self->m_buf.append(buf->base, static_cast<std::size_t>(nread));
      } catch (...) {
        self->m_read_error = UV_ENOMEM;
        self->m_eof = true;
        self->stop_reading();
      }
    }
    self->notify_reader();
    // Flow control: stop taking from the socket while more than twice the
    // limit is buffered and no reader waits for more (a waiting reader was
    // just found unsatisfied: readexactly(n) past the limit, read() to EOF).
    // `take` starts again once the reader caught up.
    if (self->buffered() > 2 * self->m_limit && self->m_read_waiters.empty()) {
      self->stop_reading();
    }
  } else if (nread == UV_EOF) {
    if (const int pending = self->pending_socket_error(); pending != 0) {
      // libuv reports a hang-up that came with a partial read as EOF; a
      // reset right behind the data is the connection failing, not its end.
      on_read(s, pending, buf);
      return;
    }
    self->m_eof = true;
    self->stop_reading();
    self->notify_reader();
    self->m_handshake_waiters.notify_all();
  } else if (nread < 0) {
    self->m_read_error = static_cast<int>(nread);
    self->m_eof = true;
    self->stop_reading();
    self->set_failed(static_cast<int>(nread));
    self->notify_reader();
    self->m_handshake_waiters.notify_all();
  }
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
    m_handshake_waiters.notify_all();
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
class handshake_awaiter final : public io_waiter {
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

void stream_state::notify_reader() noexcept {
  if (auto* w = m_read_waiters.front(); w != nullptr) {
    auto* reader = static_cast<stream_read_awaiter*>(w);
    if (reader->satisfied()) {
      reader->notify();
    }
  }
}

void stream_state::start_reading() noexcept {
  if (m_reading || m_eof || m_closing || m_close_started || !m_handle_alive) {
    return;
  }
  const int rc = uv_read_start(m_handle, &on_alloc, &on_read);
  if (rc < 0) {
    m_read_error = rc;
    m_eof = true;
    notify_reader();
    return;
  }
  m_reading = true;
}

void stream_state::stop_reading() noexcept {
  if (!m_reading) {
    return;
  }
  uv_read_stop(m_handle);
  m_reading = false;
}

std::string stream_state::take(std::size_t n) {
  std::string out(m_buf.data() + m_pos, n);
  m_pos += n;
  if (m_pos == m_buf.size()) {
    m_buf.clear();
    m_pos = 0;
  } else if (m_pos >= 64 * 1024 && m_pos >= m_buf.size() / 2) {
    m_buf.erase(0, m_pos);
    m_pos = 0;
  }
  if (!m_reading && buffered() <= m_limit) {
    start_reading();
  }
  return out;
}

void stream_state::rethrow_tls_failure() const {
  if (m_tls != nullptr && m_tls->current() == tls_session::state::failed) {
    std::rethrow_exception(m_tls->failure());
  }
}

void stream_state::throw_read_error() const {
  rethrow_tls_failure(); // what broke the stream, with OpenSSL's reason
  throw_io_error(m_read_error, "read from", m_peer);
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

void stream_state::set_failed(int code) noexcept {
  if (m_write_error == 0) {
    m_write_error = code;
  }
  m_drain_waiters.notify_all();
}

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
    self->m_drain_waiters.notify_all();
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
  self->m_drain_waiters.notify_all();
  self->m_closed_waiters.notify_all();
  self->m_handshake_waiters.notify_all();
  if (self->m_users == 0) {
    delete self;
  }
}

void stream_acquire(stream_state* s) noexcept { s->acquire(); }
void stream_release(stream_state* s) noexcept { s->release(); }

// ---- stream_read_awaiter ----

bool stream_read_awaiter::satisfied() noexcept {
  auto& s = *m_stream.get();
  const auto b = s.buffered();
  switch (m_kind) {
  case kind::some:
    return b > 0 || s.eof() || m_n == 0;
  case kind::all:
    return s.eof();
  case kind::exactly:
    return b >= m_n || s.eof();
  case kind::until:
  case kind::line: {
    const std::string_view view(s.data(), b);
    if (view.find(m_sep, m_search_from) != std::string_view::npos) {
      return true;
    }
    // The separator can start at most sep-1 bytes before the end.
    m_search_from = b >= m_sep.size() ? b - m_sep.size() + 1 : 0;
    return overrun(b) || s.eof();
  }
  }
  return true;
}

bool stream_read_awaiter::overrun(std::size_t buffered) const noexcept {
  // As asyncio: past the limit only once a separator that starts within it
  // can no longer be completed, so a separator split across two reads at the
  // limit reads the same as one that arrived whole.
  return buffered + 1 > m_stream.get()->limit() + m_sep.size();
}

bool stream_read_awaiter::await_ready() { return satisfied(); }

bool stream_read_awaiter::await_suspend(std::coroutine_handle<> h) {
  auto& s = *m_stream.get();
  if (!s.read_waiters().empty()) {
    throw error("stream_reader: another task is already waiting to read from " + s.peer());
  }
  if (!park(s.read_waiters(), h)) {
    return false;
  }
  // Paused by flow control: a reader that waits needs more than is buffered
  // (readexactly(n) past twice the limit, read() to EOF), as asyncio's
  // waiting reader resumes its transport.
  s.resume_reading();
  return true;
}

std::string stream_read_awaiter::await_resume() {
  if (m_task != nullptr) {
    check_cancel(); // before anything is consumed: a cancelled read loses nothing
  }
  auto& s = *m_stream.get();
  const auto b = s.buffered();
  switch (m_kind) {
  case kind::some:
    if (m_n == 0) {
      return {};
    }
    if (b > 0) {
      return s.take(std::min(m_n, b));
    }
    if (s.read_error() != 0) {
      s.throw_read_error();
    }
    return {};
  case kind::all:
    if (s.read_error() != 0) {
      s.throw_read_error();
    }
    return s.take(b);
  case kind::exactly:
    if (b >= m_n) {
      return s.take(m_n);
    }
    if (s.read_error() != 0) {
      s.throw_read_error();
    }
    throw incomplete_read_error(s.take(b), m_n);
  case kind::until:
  case kind::line: {
    const std::string_view view(s.data(), b);
    const auto at = view.find(m_sep, m_search_from);
    if (at != std::string_view::npos) {
      if (at > s.limit()) {
        throw limit_overrun_error("readuntil: the separator is found, but the chunk is longer than the limit (" +
                                      std::to_string(s.limit()) + " bytes)",
                                  at);
      }
      return s.take(at + m_sep.size());
    }
    if (overrun(b)) {
      throw limit_overrun_error("readuntil: the separator is not found, and the chunk exceeds the limit (" +
                                    std::to_string(s.limit()) + " bytes)",
                                b);
    }
    if (s.read_error() != 0) {
      s.throw_read_error();
    }
    if (m_kind == kind::line) {
      return s.take(b);
    }
    throw incomplete_read_error(s.take(b), 0);
  }
  }
  return {};
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

using detail::stream_read_awaiter;

// ---- stream_reader ----

detail::stream_state& stream_reader::state() const {
  if (!m_stream) {
    throw error("stream_reader: the reader is empty (not connected)");
  }
  return *m_stream.get();
}

detail::stream_read_awaiter stream_reader::read(std::size_t n) {
  state();
  return {m_stream, stream_read_awaiter::kind::some, n, {}};
}

detail::stream_read_awaiter stream_reader::read() {
  state();
  return {m_stream, stream_read_awaiter::kind::all, 0, {}};
}

detail::stream_read_awaiter stream_reader::readexactly(std::size_t n) {
  state();
  return {m_stream, stream_read_awaiter::kind::exactly, n, {}};
}

detail::stream_read_awaiter stream_reader::readline() {
  state();
  return {m_stream, stream_read_awaiter::kind::line, 0, "\n"};
}

detail::stream_read_awaiter stream_reader::readuntil(std::string separator) {
  state();
  if (separator.empty()) {
    throw error("stream_reader::readuntil: the separator must not be empty");
  }
  return {m_stream, stream_read_awaiter::kind::until, 0, std::move(separator)};
}

bool stream_reader::at_eof() const {
  auto& s = state();
  return s.eof() && s.buffered() == 0;
}

std::size_t stream_reader::limit() const { return state().limit(); }
std::size_t stream_reader::buffered() const { return state().buffered(); }

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
