// A server at work: its listeners, accepting (with a pause when descriptors
// run out), and a task per connection running the handler.

#include "io/server_state.hpp"

#include "io/counted_ref_impl.hpp"
#include "io/tls.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <chrono>
#include <memory>

namespace simul::detail {

namespace {
/// How long a server stops accepting after running out of descriptors
/// (asyncio's ACCEPT_RETRY_DELAY).
constexpr std::chrono::milliseconds k_accept_retry{1000};
} // namespace

template class counted_ref<server_state>;

// ---- listeners ----

uv_stream_t* server_state::add_listener() {
  m_listeners.reserve(m_listeners.size() + 1);
  uv_stream_t* h = nullptr;
  if (m_kind == stream_state::kind::tcp) {
    auto* tcp = new uv_tcp_t();
    uv_tcp_init(uv_loop(*m_loop), tcp);
    h = reinterpret_cast<uv_stream_t*>(tcp);
  } else {
    auto* pipe = new uv_pipe_t();
    uv_pipe_init(uv_loop(*m_loop), pipe, 0);
    h = reinterpret_cast<uv_stream_t*>(pipe);
  }
  h->data = this;
  m_listeners.push_back(h);
  return h;
}

void server_state::drop_last_listener() noexcept {
  auto* h = m_listeners.back();
  m_listeners.pop_back();
  if (m_kind == stream_state::kind::tcp) {
    close_and_delete(reinterpret_cast<uv_tcp_t*>(h));
  } else {
    close_and_delete(reinterpret_cast<uv_pipe_t*>(h));
  }
}

int server_state::listen_last(int backlog) {
  auto* h = m_listeners.back();
  if (h->delayed_error != 0) {
    return h->delayed_error; // uv_tcp_bind leaves EADDRINUSE for listen to report
  }
  uv_os_fd_t fd{};
  if (const int rc = uv_fileno(reinterpret_cast<uv_handle_t*>(h), &fd); rc < 0) {
    return rc;
  }
  if (::listen(fd, backlog) != 0) {
    return uv_translate_sys_error(errno);
  }
  auto poll = std::make_unique<uv_poll_t>();
  if (const int rc = uv_poll_init_socket(uv_loop(*m_loop), poll.get(), fd); rc < 0) {
    return rc;
  }
  poll->data = this;
  uv_poll_start(poll.get(), UV_READABLE, &on_readable);
  m_polls.push_back(poll.release());
  return 0;
}

void server_state::close() noexcept {
  m_serving = false;
  if (!m_listener_alive || m_close_started) {
    return;
  }
  m_close_started = true;
  if (m_listeners.empty()) {
    listeners_gone();
    return;
  }
  // The watchers first: a descriptor is never closed while polled.
  m_closing = m_polls.size() + (m_retry != nullptr ? 1 : 0) + m_listeners.size();
  for (auto* p : m_polls) {
    uv_close(reinterpret_cast<uv_handle_t*>(p), &on_listener_close);
  }
  if (m_retry != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(m_retry), &on_listener_close);
  }
  for (auto* h : m_listeners) {
    uv_close(reinterpret_cast<uv_handle_t*>(h), &on_listener_close);
  }
}

void server_state::close_clients() {
  // Copies: a cancelled handler that ends at once erases its own entry.
  std::vector<basic_task_handle> running(m_handlers.begin(), m_handlers.end());
  for (auto& t : running) {
    t.cancel("the server closed its clients");
  }
}

int server_state::port_of(std::size_t i) const {
  sockaddr_storage addr{};
  if (!local_address(i, addr)) {
    return 0;
  }
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
}

std::vector<std::string> server_state::socknames() const {
  if (m_kind != stream_state::kind::tcp) {
    return {m_name};
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < m_listeners.size(); ++i) {
    sockaddr_storage addr{};
    if (local_address(i, addr)) {
      out.push_back(format_address(reinterpret_cast<sockaddr*>(&addr)));
    }
  }
  return out;
}

void server_state::set_unix_path(std::string path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    m_unix_file = {st.st_dev, st.st_ino};
    m_unix_path = std::move(path);
  }
}

void server_state::release() noexcept {
  if (--m_users == 0) {
    if (m_listener_alive && m_loop->is_closed()) {
      free_listeners(); // the loop closed them without our callback
    }
    close();
  }
  maybe_delete();
}

void server_state::handler_done(slot s) noexcept {
  m_handlers.erase(s);
  if (all_done()) {
    m_done_waiters.signal_all();
  }
}

void server_state::maybe_delete() noexcept {
  if (m_users == 0 && m_internal == 0 && !m_listener_alive) {
    delete this;
  }
}

bool server_state::local_address(std::size_t i, sockaddr_storage& addr) const noexcept {
  if (m_kind != stream_state::kind::tcp || !m_listener_alive || m_close_started || i >= m_listeners.size()) {
    return false;
  }
  int len = sizeof addr;
  return uv_tcp_getsockname(reinterpret_cast<uv_tcp_t*>(m_listeners[i]), reinterpret_cast<sockaddr*>(&addr), &len) == 0;
}

void server_state::delete_listener(stream_state::kind k, uv_stream_t* h) noexcept {
  if (k == stream_state::kind::tcp) {
    delete reinterpret_cast<uv_tcp_t*>(h);
  } else {
    delete reinterpret_cast<uv_pipe_t*>(h);
  }
}

void server_state::free_listeners() noexcept {
  for (auto* p : m_polls) {
    delete p;
  }
  m_polls.clear();
  delete m_retry;
  m_retry = nullptr;
  for (auto* h : m_listeners) {
    delete_listener(m_kind, h);
  }
  m_listeners.clear();
  m_listener_alive = false;
}

void server_state::on_listener_close(uv_handle_t* h) noexcept {
  auto* self = static_cast<server_state*>(h->data);
  if (--self->m_closing > 0) {
    return; // the memory goes with the last one, below
  }
  self->free_listeners();
  self->listeners_gone();
  self->maybe_delete();
}

void server_state::listeners_gone() noexcept {
  m_listener_alive = false;
  if (struct stat st{}; !m_unix_path.empty() && ::lstat(m_unix_path.c_str(), &st) == 0 &&
                        std::pair(st.st_dev, st.st_ino) == m_unix_file) {
    ::unlink(m_unix_path.c_str()); // not another server's socket that replaced ours
  }
  m_closed_waiters.signal_all();
  if (all_done()) {
    m_done_waiters.signal_all();
  }
}

// ---- accepting ----

namespace {

/// Keeps a server alive from a handler task and frees the task's slot when
/// the task ends, however it ends (even when its frame is destroyed).
///
/// It is a parameter of the handler's coroutine, so it lives in the frame
/// from the moment the task is made, even if the task is cancelled (or the
/// loop closes) before its first step.
class handler_guard {
 public:
  handler_guard(server_state* s, server_state::slot slot) noexcept : m_server(s), m_slot(slot) {
    s->acquire_internal();
  }
  handler_guard(handler_guard&& o) noexcept : m_server(std::exchange(o.m_server, nullptr)), m_slot(o.m_slot) {}
  handler_guard(const handler_guard&) = delete;
  handler_guard& operator=(const handler_guard&) = delete;
  handler_guard& operator=(handler_guard&&) = delete;
  ~handler_guard() {
    if (m_server != nullptr) {
      m_server->handler_done(m_slot);
      m_server->release_internal();
    }
  }
  [[nodiscard]] server_state& owner() const noexcept { return *m_server; }

 private:
  server_state* m_server;
  server_state::slot m_slot;
};

task<void> serve_client(handler_guard guard, stream_ref ref) {
  auto* s = &guard.owner();
  stream_reader reader(ref);
  stream_writer writer(ref);
  std::string peer = writer.get_extra_info("peername");
  if (ref.get()->tls() != nullptr) {
    try {
      co_await finish_handshake(ref, s->options().ssl_handshake_timeout);
    } catch (const cancelled_error&) {
      co_return; // close_clients, the loop closing
    } catch (...) {
      s->count_handshake_failure();
      if (auto error = ref.get()->tls()->callback_error()) {
        // The program's own server-name callback failed: never silent.
        report(s->loop(), "Exception in the TLS server-name callback (peer " + peer + ")", error);
      }
      co_return; // otherwise the client's failure, not the program's: dropped, as asyncio does
    }
  }
  ref = {};
  try {
    co_await s->handler()(std::move(reader), std::move(writer));
  } catch (const cancelled_error&) {
    // A cancelled handler ends quietly (close_clients, the loop closing).
  } catch (...) {
    report(s->loop(), "Unhandled exception in a connection handler (peer " + peer + ")", std::current_exception());
  }
}

} // namespace

void server_state::on_readable(uv_poll_t* poll, int status, int) noexcept {
  auto* self = static_cast<server_state*>(poll->data);
  if (status < 0) {
    report(*self->m_loop, "accept failed on " + self->m_name, make_io_error(status, "accept on", self->m_name));
    return;
  }
  uv_os_fd_t listener{};
  uv_fileno(reinterpret_cast<uv_handle_t*>(poll), &listener);
  // A bounded batch: the poll is level-triggered, the rest comes next turn.
  for (int i = 0; i < 128 && !self->m_close_started; ++i) {
    const int fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      self->m_accept_trouble = false;
      self->serve(fd);
      continue;
    }
    const int code = errno;
    if (code == EAGAIN || code == EWOULDBLOCK) {
      return;
    }
    if (code == EINTR || code == ECONNABORTED || code == EPROTO) {
      continue; // that client gave up; the next one may not have
    }
    if (code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM) {
      self->pause_accepting(code);
      return;
    }
    report(*self->m_loop, "accept failed on " + self->m_name,
           make_io_error(uv_translate_sys_error(code), "accept on", self->m_name));
    return;
  }
}

void server_state::pause_accepting(int code) noexcept {
  ++m_accept_failures;
  if (!m_accept_trouble) {
    m_accept_trouble = true;
    report(*m_loop,
           "accepting on " + m_name + " failed (" + uv_err_name(uv_translate_sys_error(code)) + "); it pauses for " +
               std::to_string(k_accept_retry.count()) +
               " ms, the clients wait in the listen queue (reported once until an accept succeeds)",
           make_io_error(uv_translate_sys_error(code), "accept on", m_name));
  }
  for (auto* p : m_polls) {
    uv_poll_stop(p);
  }
  if (m_retry == nullptr) {
    m_retry = new (std::nothrow) uv_timer_t();
    if (m_retry == nullptr) {
      on_retry(nullptr); // no memory even for the timer: try again at once
      return;
    }
    uv_timer_init(uv_loop(*m_loop), m_retry);
    m_retry->data = this;
  }
  uv_timer_start(m_retry, &on_retry, static_cast<std::uint64_t>(k_accept_retry.count()), 0);
}

void server_state::on_retry(uv_timer_t* timer) noexcept {
  auto* self = static_cast<server_state*>(timer->data);
  if (self->m_close_started) {
    return;
  }
  for (auto* p : self->m_polls) {
    uv_poll_start(p, UV_READABLE, &on_readable);
  }
}

void server_state::serve(int fd) noexcept {
  bool owned = false; // by a stream handle, which closes it
  try {
    stream_ref ref(new stream_state(*m_loop, m_kind, m_options.limit));
    auto& conn = *ref.get();
    const int rc = m_kind == stream_state::kind::tcp ? uv_tcp_open(reinterpret_cast<uv_tcp_t*>(conn.stream()), fd)
                                                     : uv_pipe_open(reinterpret_cast<uv_pipe_t*>(conn.stream()), fd);
    if (rc < 0) {
      ::close(fd);
      report(*m_loop, "accept failed on " + m_name, make_io_error(rc, "accept on", m_name));
      return;
    }
    owned = true;
    if (m_kind == stream_state::kind::tcp) {
      auto* tcp = reinterpret_cast<uv_tcp_t*>(conn.stream());
      uv_tcp_nodelay(tcp, 1);
      sockaddr_storage addr{};
      int len = sizeof addr;
      if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
        conn.set_peer(format_address(reinterpret_cast<sockaddr*>(&addr)));
      }
    } else {
      conn.set_peer(m_name);
    }
    if (m_ssl) {
      // Before reading starts: the client's first bytes are its hello.
      conn.start_tls(std::make_unique<tls_session>(*m_ssl, std::string(), conn.peer()));
    }
    conn.on_connected();
    // If making or scheduling the task fails, the guard frees the slot.
    auto slot = add_handler_slot();
    auto client = serve_client(handler_guard(this, slot), ref);
    *slot = m_loop->create_task(std::move(client));
  } catch (...) {
    if (!owned) {
      ::close(fd);
    }
    report(*m_loop, "could not start a connection handler on " + m_name, std::current_exception());
  }
}

} // namespace simul::detail
