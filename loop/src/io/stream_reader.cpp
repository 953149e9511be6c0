// A stream's reading side: the data libuv reads into the buffer, the
// reader's awaitable, and `stream_reader`'s calls.

#include "io/stream_state.hpp"

#include <algorithm>
#include <string_view>

namespace simul::detail {

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
    self->m_handshake_waiters.signal_all();
  } else if (nread < 0) {
    self->m_read_error = static_cast<int>(nread);
    self->m_eof = true;
    self->stop_reading();
    self->set_failed(static_cast<int>(nread));
    self->notify_reader();
    self->m_handshake_waiters.signal_all();
  }
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

void stream_state::throw_read_error() const {
  rethrow_tls_failure(); // what broke the stream, with OpenSSL's reason
  throw_io_error(m_read_error, "read from", m_peer);
}

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
  case kind::line:
    return take_until(s, b);
  }
  return {};
}

std::string stream_read_awaiter::take_until(stream_state& s, std::size_t b) {
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

} // namespace simul
