// Connections and servers: open_connection, start_server and their Unix twins.

#include "io/stream_state.hpp"
#include "io/tls.hpp"

#include <simul/loop/server.hpp>
#include <simul/loop/task_group.hpp>
#include <simul/loop/task_handle.hpp>
#include <simul/loop/wait.hpp>

#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <chrono>
#include <list>
#include <memory>
#include <optional>

namespace simul::detail {

namespace {
/// How long a server stops accepting after running out of descriptors
/// (asyncio's ACCEPT_RETRY_DELAY).
constexpr std::chrono::milliseconds k_accept_retry{1000};
} // namespace

// ---- connecting ----

namespace {

class connect_awaiter;
struct connect_op : request_op<uv_connect_t, connect_awaiter> {};

/// Connects the (fresh) handle of `stream` to an address or a socket path.
/// Gives libuv's status; cancellable (the request completes with ECANCELED
/// when the handle closes with the stream).
class connect_awaiter final : public request_awaiter<connect_awaiter, connect_op, false> {
 public:
  connect_awaiter(stream_state& s, const sockaddr* addr, const std::string* path)
      : m_stream(s), m_addr(addr), m_path(path) {}

  int start(connect_op& op) {
    if (m_addr != nullptr) {
      return uv_tcp_connect(&op.req, reinterpret_cast<uv_tcp_t*>(m_stream.stream()), m_addr, &on_connect);
    }
    uv_pipe_connect(&op.req, reinterpret_cast<uv_pipe_t*>(m_stream.stream()), m_path->c_str(), &on_connect);
    return 0;
  }
  int await_resume() {
    check_cancel();
    return m_status;
  }

 private:
  static void on_connect(uv_connect_t* req, int status) { finish(static_cast<connect_op*>(req->data), status); }

  stream_state& m_stream;
  const sockaddr* m_addr;
  const std::string* m_path;
};

std::pair<stream_reader, stream_writer> make_pair_of(const stream_ref& ref) {
  return {stream_reader(ref), stream_writer(ref)};
}

/// A client's TLS settings, copied from its options when the call starts.
struct client_tls {
  std::optional<ssl_context> context; ///< none: plain
  std::string name;                   ///< the name to send and check
  std::chrono::milliseconds timeout{};
};

/// Checks a client's TLS options before anything starts and copies them;
/// the name is `server_hostname`, else `host`.
client_tls tls_settings(const connection_options& options, const char* who, const std::string& host) {
  if (options.ssl == nullptr) {
    return {};
  }
  if (options.ssl->is_server()) {
    throw error(std::string(who) + ": ssl needs a client context (ssl_context::client())");
  }
  auto name = options.server_hostname.empty() ? host : std::string(options.server_hostname);
  if (name.empty() && options.ssl->check_hostname()) {
    throw error(std::string(who) + ": the context checks hostnames: give server_hostname");
  }
  return {*options.ssl, std::move(name), options.ssl_handshake_timeout};
}

/// The end of every open_connection: the TLS handshake if asked for, then
/// the reader and writer.
task<std::pair<stream_reader, stream_writer>> connected(stream_ref ref, client_tls tls) {
  auto& s = *ref.get();
  if (tls.context) {
    s.start_tls(std::make_unique<tls_session>(*tls.context, std::move(tls.name), s.peer()));
  }
  s.on_connected();
  if (tls.context) {
    co_await finish_handshake(ref, tls.timeout);
  }
  co_return make_pair_of(ref);
}

/// Refuses the options that only `open_connection(host, port)` knows.
void refuse_tcp_options(const connection_options& options, const char* who) {
  if (options.family != AF_UNSPEC || !options.local_host.empty() || options.local_port != 0 ||
      options.happy_eyeballs_delay || options.interleave || options.all_errors) {
    throw error(std::string(who) +
                ": family, local_host, local_port, happy_eyeballs_delay, interleave and all_errors apply to "
                "open_connection(host, port) only");
  }
}

/// One address's connection attempt: the connected stream, or libuv's error.
struct attempt_result {
  stream_ref ref; ///< set when connected
  int status = 0;
  std::string address; ///< "host:port" of the address tried
};

/// Binds the fresh socket of `s` to the first of `locals` of `family` that
/// binds; UV_EADDRNOTAVAIL if none is of that family.
int bind_local(stream_state& s, int family, const std::vector<resolved_address>& locals) {
  int rc = UV_EADDRNOTAVAIL;
  for (const auto& local : locals) {
    if (local.family == family) {
      rc = uv_tcp_bind(reinterpret_cast<uv_tcp_t*>(s.stream()), reinterpret_cast<const sockaddr*>(&local.addr), 0);
      if (rc == 0) {
        break;
      }
    }
  }
  return rc;
}

/// Connects a new TCP stream to `target`, bound first to one of `locals` if any.
task<attempt_result> attempt_connect(event_loop& loop, resolved_address target, std::size_t limit,
                                     std::vector<resolved_address> locals) {
  attempt_result out;
  const auto* addr = reinterpret_cast<const sockaddr*>(&target.addr);
  out.address = format_address(addr);
  stream_ref ref(new stream_state(loop, stream_state::kind::tcp, limit));
  auto& s = *ref.get();
  out.status = locals.empty() ? 0 : bind_local(s, target.family, locals);
  if (out.status == 0) {
    out.status = co_await connect_awaiter(s, addr, nullptr);
  }
  if (out.status == 0) {
    uv_tcp_nodelay(reinterpret_cast<uv_tcp_t*>(s.stream()), 1);
    s.set_peer(out.address);
    out.ref = std::move(ref);
  }
  co_return out;
}

/// Throws for a connection that no address accepted: the one failure as it
/// is, or every address's; with `all_errors`, each as an exception of its own.
[[noreturn]] void throw_connect_failure(const std::string& where, const std::vector<attempt_result>& failures,
                                        bool all_errors) {
  if (failures.empty()) {
    throw_io_error(UV_EADDRNOTAVAIL, "connect to", where);
  }
  if (all_errors) {
    std::vector<std::exception_ptr> errors;
    for (const auto& f : failures) {
      errors.push_back(make_io_error(f.status, "connect to", f.address));
    }
    throw exception_group("connect to " + where + " failed", std::move(errors));
  }
  if (failures.size() == 1) {
    throw_io_error(failures.front().status, "connect to", where);
  }
  std::string message = "connect to " + where + ": every address failed: ";
  for (const auto& f : failures) {
    message += (&f == &failures.front() ? "" : "; ") + f.address + ": " + error_text(f.status);
  }
  std::rethrow_exception(make_io_error_message(failures.back().status, message, where));
}

/// The first of `addresses` to accept: tried one after another, or with
/// `delay`, staggered (Happy Eyeballs). Throws if none accepts.
task<stream_ref> connect_first(event_loop& loop, std::vector<resolved_address> addresses, std::size_t limit,
                               std::vector<resolved_address> locals, std::optional<std::chrono::milliseconds> delay,
                               std::string where, bool all_errors) {
  std::vector<attempt_result> failures;
  if (!delay || addresses.size() < 2) {
    for (auto& a : addresses) {
      auto r = co_await attempt_connect(loop, std::move(a), limit, locals);
      if (r.ref) {
        co_return std::move(r.ref);
      }
      failures.push_back(std::move(r));
    }
    throw_connect_failure(where, failures, all_errors);
  }
  std::vector<task_handle<attempt_result>> pending;
  // Whatever ends this frame (a winner, an error, a cancellation) cancels the
  // attempts still running; a cancelled attempt closes its socket.
  struct cancel_pending {
    std::vector<task_handle<attempt_result>>& attempts;
    ~cancel_pending() {
      for (auto& h : attempts) {
        h.cancel();
      }
    }
  } guard{pending};
  std::size_t next = 0;
  for (;;) {
    if (next < addresses.size()) {
      pending.push_back(loop.create_task(attempt_connect(loop, std::move(addresses[next++]), limit, locals)));
    }
    // Until one finishes, or the delay passes while addresses are left.
    (void)co_await wait(pending, return_when::first_completed, next < addresses.size() ? *delay : no_timeout);
    stream_ref winner;
    std::vector<task_handle<attempt_result>> running;
    for (auto& h : pending) {
      if (!h.done()) {
        running.push_back(std::move(h));
        continue;
      }
      auto r = h.result();
      if (!r.ref) {
        failures.push_back(std::move(r));
      } else if (!winner) {
        winner = std::move(r.ref);
      } // a second connection in the same iteration closes with its task
    }
    pending = std::move(running);
    if (winner) {
      co_return winner;
    }
    if (pending.empty() && next == addresses.size()) {
      throw_connect_failure(where, failures, all_errors);
    }
  }
}

/// What every start_server checks before it binds anything.
void check_server_args(const connection_handler& handler, const server_options& options, const char* who) {
  if (!handler) {
    throw error(std::string(who) + ": the handler is empty");
  }
  if (options.limit == 0) {
    throw error(std::string(who) + ": the reader limit must be positive");
  }
  if (options.ssl != nullptr && !options.ssl->is_server()) {
    throw error(std::string(who) + ": ssl needs a server context (ssl_context::server())");
  }
}

} // namespace

// ---- the server ----

class server_state {
 public:
  server_state(event_loop& loop, stream_state::kind k, connection_handler handler, server_options options)
      : m_loop(&loop), m_kind(k), m_handler(std::move(handler)), m_options(options) {
    if (options.ssl != nullptr) {
      m_ssl = *options.ssl; // the server's own reference
      m_options.ssl = &*m_ssl;
    }
  }
  server_state(const server_state&) = delete;
  server_state& operator=(const server_state&) = delete;

  /// A new listening handle (one per bound address); the server owns it.
  uv_stream_t* add_listener() {
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
  /// Closes and forgets the newest listener (its address could not be bound).
  void drop_last_listener() noexcept {
    auto* h = m_listeners.back();
    m_listeners.pop_back();
    if (m_kind == stream_state::kind::tcp) {
      close_and_delete(reinterpret_cast<uv_tcp_t*>(h));
    } else {
      close_and_delete(reinterpret_cast<uv_pipe_t*>(h));
    }
  }
  [[nodiscard]] std::size_t listener_count() const noexcept { return m_listeners.size(); }
  [[nodiscard]] event_loop& loop() const noexcept { return *m_loop; }

  /// Listens on the newest listener (libuv reports most bind errors here).
  /// The server accepts by itself (not uv_listen): libuv closes connections
  /// it cannot accept for lack of descriptors, in silence.
  int listen_last(int backlog) {
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
  void set_serving() noexcept { m_serving = true; }

  void close() noexcept {
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

  void close_clients() {
    // Copies: a cancelled handler that ends at once erases its own entry.
    std::vector<basic_task_handle> running(m_handlers.begin(), m_handlers.end());
    for (auto& t : running) {
      t.cancel("the server closed its clients");
    }
  }

  [[nodiscard]] bool serving() const noexcept { return m_serving; }
  [[nodiscard]] bool listener_closed() const noexcept { return !m_listener_alive; }
  [[nodiscard]] bool all_done() const noexcept { return !m_listener_alive && m_handlers.empty(); }
  [[nodiscard]] std::size_t active() const noexcept { return m_handlers.size(); }
  io_wait_list& closed_waiters() noexcept { return m_closed_waiters; }
  io_wait_list& done_waiters() noexcept { return m_done_waiters; }

  /// The port the listener `i` is bound to (TCP), 0 if unknown.
  int port_of(std::size_t i) const {
    sockaddr_storage addr{};
    if (!local_address(i, addr)) {
      return 0;
    }
    if (addr.ss_family == AF_INET) {
      return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    }
    return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  }
  int port() const { return m_port; }
  std::string sockname() const { return m_name; }
  /// Every bound address ("host:port" each; the path for a Unix server).
  std::vector<std::string> socknames() const {
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
  void set_name(std::string name, int port) {
    m_name = std::move(name);
    m_port = port;
  }
  /// The socket file this server made: removed when it closes, and only if
  /// the file at the path is still that one (same device and inode).
  void set_unix_path(std::string path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      m_unix_file = {st.st_dev, st.st_ino};
      m_unix_path = std::move(path);
    }
  }

  // Ownership: users are `server` objects; internal references are handler
  // tasks and awaitables; the listener handle counts while open.
  void acquire_user() noexcept { ++m_users; }
  void release_user() noexcept {
    if (--m_users == 0) {
      if (m_listener_alive && m_loop->is_closed()) {
        free_listeners(); // the loop closed them without our callback
      }
      close();
    }
    maybe_delete();
  }
  void acquire() noexcept { ++m_internal; }
  void release() noexcept {
    --m_internal;
    maybe_delete();
  }

  /// Handler tasks: a slot for each, erased when it ends.
  using slot = std::list<basic_task_handle>::iterator;
  slot add_handler_slot() { return m_handlers.emplace(m_handlers.end()); }
  void handler_done(slot s) noexcept {
    m_handlers.erase(s);
    if (all_done()) {
      m_done_waiters.notify_all();
    }
  }
  const connection_handler& handler() const noexcept { return m_handler; }
  const server_options& options() const noexcept { return m_options; }
  void count_handshake_failure() noexcept { ++m_handshake_failures; }
  [[nodiscard]] std::size_t accept_failures() const noexcept { return m_accept_failures; }
  [[nodiscard]] std::size_t handshake_failures() const noexcept { return m_handshake_failures; }

 private:
  ~server_state() = default;

  void maybe_delete() noexcept {
    if (m_users == 0 && m_internal == 0 && !m_listener_alive) {
      delete this;
    }
  }

  bool local_address(std::size_t i, sockaddr_storage& addr) const noexcept {
    if (m_kind != stream_state::kind::tcp || !m_listener_alive || m_close_started || i >= m_listeners.size()) {
      return false;
    }
    int len = sizeof addr;
    return uv_tcp_getsockname(reinterpret_cast<uv_tcp_t*>(m_listeners[i]), reinterpret_cast<sockaddr*>(&addr), &len) ==
           0;
  }

  static void delete_listener(stream_state::kind k, uv_stream_t* h) noexcept {
    if (k == stream_state::kind::tcp) {
      delete reinterpret_cast<uv_tcp_t*>(h);
    } else {
      delete reinterpret_cast<uv_pipe_t*>(h);
    }
  }

  void free_listeners() noexcept {
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

  static void on_listener_close(uv_handle_t* h) noexcept {
    auto* self = static_cast<server_state*>(h->data);
    if (--self->m_closing > 0) {
      return; // the memory goes with the last one, below
    }
    self->free_listeners();
    self->listeners_gone();
    self->maybe_delete();
  }

  void listeners_gone() noexcept {
    m_listener_alive = false;
    if (struct stat st{}; !m_unix_path.empty() && ::lstat(m_unix_path.c_str(), &st) == 0 &&
                          std::pair(st.st_dev, st.st_ino) == m_unix_file) {
      ::unlink(m_unix_path.c_str()); // not another server's socket that replaced ours
    }
    m_closed_waiters.notify_all();
    if (all_done()) {
      m_done_waiters.notify_all();
    }
  }

  static void on_readable(uv_poll_t* poll, int status, int events) noexcept;
  static void on_retry(uv_timer_t* timer) noexcept;
  /// Out of descriptors or memory: reports it (once until an accept
  /// succeeds again), counts it, and stops accepting for a moment; the
  /// clients wait in the listen queue meanwhile, as asyncio's do.
  void pause_accepting(int code) noexcept;
  /// Serves a connection accepted on descriptor `fd` (which it owns now).
  void serve(int fd) noexcept;

  event_loop* m_loop;
  stream_state::kind m_kind;
  connection_handler m_handler;
  server_options m_options;
  std::optional<ssl_context> m_ssl;
  std::vector<uv_stream_t*> m_listeners;
  std::vector<uv_poll_t*> m_polls;   // one per listener: accepting
  uv_timer_t* m_retry = nullptr;     // resumes accepting after a pause
  std::size_t m_accept_failures = 0; // accepts that failed for lack of descriptors or memory
  bool m_accept_trouble = false;     // reported, and no accept succeeded since
  std::size_t m_closing = 0;         // listeners whose close callback is still due
  std::string m_name;
  std::string m_unix_path;
  std::pair<dev_t, ino_t> m_unix_file{};
  int m_port = 0;
  std::size_t m_handshake_failures = 0;
  unsigned m_users = 0;
  unsigned m_internal = 0;
  bool m_listener_alive = true;
  bool m_close_started = false;
  bool m_serving = false;
  std::list<basic_task_handle> m_handlers;
  io_wait_list m_closed_waiters;
  io_wait_list m_done_waiters;
};

void server_acquire(server_state* s) noexcept { s->acquire_user(); }
void server_release(server_state* s) noexcept { s->release_user(); }

namespace {

/// Keeps a server alive from a handler task and frees the task's slot when
/// the task ends, however it ends (even when its frame is destroyed).
///
/// It is a parameter of the handler's coroutine, so it lives in the frame
/// from the moment the task is made, even if the task is cancelled (or the
/// loop closes) before its first step.
class handler_guard {
 public:
  handler_guard(server_state* s, server_state::slot slot) noexcept : m_server(s), m_slot(slot) { s->acquire(); }
  handler_guard(handler_guard&& o) noexcept : m_server(std::exchange(o.m_server, nullptr)), m_slot(o.m_slot) {}
  handler_guard(const handler_guard&) = delete;
  handler_guard& operator=(const handler_guard&) = delete;
  handler_guard& operator=(handler_guard&&) = delete;
  ~handler_guard() {
    if (m_server != nullptr) {
      m_server->handler_done(m_slot);
      m_server->release();
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

// ---- server_wait_awaiter ----

server_wait_awaiter::server_wait_awaiter(server_state* s, bool all_done) : m_server(s), m_all_done(all_done) {
  s->acquire();
}
server_wait_awaiter::server_wait_awaiter(server_wait_awaiter&& o) noexcept
    : io_waiter(), m_server(std::exchange(o.m_server, nullptr)), m_all_done(o.m_all_done) {}
server_wait_awaiter::~server_wait_awaiter() {
  unlink();
  if (m_server != nullptr) {
    m_server->release();
  }
}
bool server_wait_awaiter::await_ready() const noexcept {
  return m_all_done ? m_server->all_done() : m_server->listener_closed();
}
bool server_wait_awaiter::await_suspend(std::coroutine_handle<> h) {
  return park(m_all_done ? m_server->done_waiters() : m_server->closed_waiters(), h);
}
void server_wait_awaiter::await_resume() {
  if (m_task != nullptr) {
    check_cancel();
  }
}

namespace {

task<void> serve_forever_impl(server srv, server_state* s) {
  try {
    co_await server_wait_awaiter(s, false);
  } catch (const cancelled_error&) {
    srv.close();
    throw;
  }
}

} // namespace

} // namespace simul::detail

namespace simul {

using detail::server_state;
using detail::stream_ref;
using detail::stream_state;

// ---- server ----

server::server(detail::server_state* s) noexcept : m_state(s) {
  if (s != nullptr) {
    s->acquire_user();
  }
}
server::server(const server& o) noexcept : server(o.m_state) {}
server::~server() {
  if (m_state != nullptr) {
    m_state->release_user();
  }
}

detail::server_state& server::state() const {
  if (m_state == nullptr) {
    throw error("server: the server object is empty");
  }
  return *m_state;
}

int server::port() const { return state().port(); }
std::string server::sockname() const { return state().sockname(); }
std::vector<std::string> server::socknames() const { return state().socknames(); }
bool server::is_serving() const { return state().serving(); }
void server::close() { state().close(); }
void server::close_clients() { state().close_clients(); }
std::size_t server::active_connections() const { return state().active(); }
std::size_t server::handshake_failures() const { return state().handshake_failures(); }
std::size_t server::accept_failures() const { return state().accept_failures(); }
detail::server_wait_awaiter server::wait_closed() const { return {&state(), true}; }
task<void> server::serve_forever() const { return detail::serve_forever_impl(*this, &state()); }

// ---- TCP ----

namespace {

/// Gives the fresh TCP handle `h` a socket of `family` with SO_REUSEPORT set,
/// before it is bound (libuv makes its sockets inside bind, too late for the
/// option). 0 or a negative errno, as libuv's calls give.
int open_reusing_port(uv_tcp_t* h, int family) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -errno;
  }
  const int on = 1;
  int rc = ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) == 0 ? 0 : -errno;
  if (rc == 0) {
    rc = uv_tcp_open(h, fd);
  }
  if (rc < 0) {
    ::close(fd);
  }
  return rc;
}

/// Gives the fresh handle `h` of kind `k` the adopted descriptor `fd`. libuv
/// takes it only on success (EEXIST: the loop already watches it).
int open_adopted(stream_state::kind k, uv_stream_t* h, int fd) {
  return k == stream_state::kind::tcp ? uv_tcp_open(reinterpret_cast<uv_tcp_t*>(h), fd)
                                      : uv_pipe_open(reinterpret_cast<uv_pipe_t*>(h), fd);
}

stream_state::kind kind_of(const detail::adopted_socket& info) noexcept {
  return info.family == AF_UNIX ? stream_state::kind::pipe : stream_state::kind::tcp;
}

/// What an adopted socket is called in messages: its address, else "fd N".
std::string shown_name(const std::string& address, int fd) {
  return address.empty() ? "fd " + std::to_string(fd) : address;
}

} // namespace

task<std::pair<stream_reader, stream_writer>> open_connection(std::string host, int port, connection_options options) {
  constexpr const char* who = "open_connection";
  auto& loop = detail::running_loop_checked(who);
  detail::ignore_sigpipe_once();
  if (port < 0 || port > 65535) {
    throw error("open_connection: port " + std::to_string(port) + " is out of range");
  }
  if (options.family != AF_UNSPEC && options.family != AF_INET && options.family != AF_INET6) {
    throw error("open_connection: family " + std::to_string(options.family) + " is not AF_INET, AF_INET6 or AF_UNSPEC");
  }
  if (options.local_port < 0 || options.local_port > 65535) {
    throw error("open_connection: local_port " + std::to_string(options.local_port) + " is out of range");
  }
  if (options.happy_eyeballs_delay && options.happy_eyeballs_delay->count() < 0) {
    throw error("open_connection: happy_eyeballs_delay is negative");
  }
  const auto where = detail::join_host_port(host, port);
  auto tls = detail::tls_settings(options, who, host);
  // Copied before the first suspension: the views may not outlive it.
  std::string local_host(options.local_host);
  const auto delay = options.happy_eyeballs_delay;
  const auto interleave = options.interleave ? *options.interleave : delay ? 1 : 0;
  auto addresses = co_await detail::resolve(host, std::to_string(port), options.family, SOCK_STREAM, 0, 0);
  if (interleave > 0) {
    addresses = detail::interleave_families(std::move(addresses), interleave);
  }
  std::vector<detail::resolved_address> locals;
  if (!local_host.empty() || options.local_port != 0) {
    const auto local = detail::join_host_port(local_host, options.local_port);
    locals = co_await detail::resolve(std::move(local_host), std::to_string(options.local_port), options.family,
                                      SOCK_STREAM, 0, AI_PASSIVE);
    // An address no local address can reach is not tried (asyncio's rule).
    std::erase_if(addresses, [&locals](const detail::resolved_address& a) {
      return std::none_of(locals.begin(), locals.end(),
                          [&a](const detail::resolved_address& l) { return l.family == a.family; });
    });
    if (addresses.empty()) {
      throw io_error(EADDRNOTAVAIL,
                     "connect to " + where + ": no address of the same family as the local address " + local, where);
    }
  }
  auto ref = co_await detail::connect_first(loop, std::move(addresses), options.limit, std::move(locals), delay, where,
                                            options.all_errors);
  co_return co_await detail::connected(ref, std::move(tls));
}

task<std::pair<stream_reader, stream_writer>> open_connection(socket_fd sock, connection_options options) {
  constexpr const char* who = "open_connection";
  auto& loop = detail::running_loop_checked(who);
  detail::ignore_sigpipe_once();
  detail::refuse_tcp_options(options, who);
  auto tls = detail::tls_settings(options, who, {});
  const auto info = detail::inspect_socket(sock.fd, SOCK_STREAM, who);
  if (info.listening) {
    detail::throw_descriptor_error(EINVAL, who, sock.fd, "is listening (a server's socket: give it to start_server)");
  }
  if (!info.connected) {
    detail::throw_descriptor_error(ENOTCONN, who, sock.fd, "is not connected");
  }
  const auto k = kind_of(info);
  stream_ref ref(new stream_state(loop, k, options.limit));
  auto& s = *ref.get();
  if (const int rc = open_adopted(k, s.stream(), sock.fd); rc < 0) {
    detail::throw_not_adopted(rc, who, sock.fd);
  }
  if (k == stream_state::kind::tcp) {
    uv_tcp_nodelay(reinterpret_cast<uv_tcp_t*>(s.stream()), 1);
  }
  s.set_peer(shown_name(info.peer, sock.fd));
  co_return co_await detail::connected(ref, std::move(tls));
}

task<server> start_server(connection_handler handler, socket_fd sock, server_options options) {
  constexpr const char* who = "start_server";
  detail::check_server_args(handler, options, who);
  if (options.reuse_port) {
    throw error("start_server: reuse_port applies to sockets simul makes; set SO_REUSEPORT on an adopted one");
  }
  auto& loop = detail::running_loop_checked(who);
  detail::ignore_sigpipe_once();
  const auto info = detail::inspect_socket(sock.fd, SOCK_STREAM, who);
  if (info.connected) {
    detail::throw_descriptor_error(EISCONN, who, sock.fd,
                                   "is connected (a connection's socket: give it to open_connection)");
  }
  // Listening here, before libuv takes the descriptor, keeps a failure (an
  // unbound Unix socket, say) from costing the caller the socket.
  if (!info.listening && ::listen(sock.fd, options.backlog) != 0) {
    const int code = errno;
    detail::throw_descriptor_error(code, who, sock.fd, "cannot listen");
  }
  const auto k = kind_of(info);
  server srv(new server_state(loop, k, std::move(handler), options));
  auto& s = srv.state();
  if (const int rc = open_adopted(k, s.add_listener(), sock.fd); rc < 0) {
    s.drop_last_listener(); // its handle never had the descriptor
    srv.close();
    detail::throw_not_adopted(rc, who, sock.fd);
  }
  if (const int rc = s.listen_last(options.backlog); rc < 0) {
    srv.close(); // the listener owns the descriptor now: closing it closes the socket
    detail::throw_io_error(rc, "listen on", shown_name(info.local, sock.fd));
  }
  s.set_serving();
  // A TCP listener's address as it is now: listen() binds an unbound socket to a free port.
  const auto names = k == stream_state::kind::tcp ? s.socknames() : std::vector<std::string>{};
  s.set_name(names.empty() ? shown_name(info.local, sock.fd) : names.front(),
             k == stream_state::kind::tcp ? s.port_of(0) : 0);
  co_return srv;
}

task<server> start_server(connection_handler handler, std::string host, int port, server_options options) {
  return start_server(std::move(handler), std::vector<std::string>{std::move(host)}, port, options);
}

task<server> start_server(connection_handler handler, std::initializer_list<std::string> hosts, int port,
                          server_options options) {
  return start_server(std::move(handler), std::vector<std::string>(hosts), port, options);
}

task<server> start_server(connection_handler handler, std::vector<std::string> hosts, int port,
                          server_options options) {
  detail::check_server_args(handler, options, "start_server");
  if (port < 0 || port > 65535) {
    throw error("start_server: port " + std::to_string(port) + " is out of range");
  }
  auto& loop = detail::running_loop_checked("start_server");
  detail::ignore_sigpipe_once();
  // An empty host (or no host) means every interface, IPv4 and IPv6, as
  // asyncio's None.
  if (hosts.empty()) {
    hosts.emplace_back();
  }
  auto shown = [&hosts](int p) {
    std::string out;
    for (const auto& host : hosts) {
      out += (out.empty() ? "" : ", ") + detail::join_host_port(host.empty() ? "0.0.0.0" : host, p);
    }
    return out;
  };
  const auto where = shown(port);
  std::vector<detail::resolved_address> addresses;
  for (const auto& host : hosts) {
    for (const auto& name : host.empty() ? std::vector<std::string>{"0.0.0.0", "::"} : std::vector<std::string>{host}) {
      auto found = co_await detail::resolve(name, std::to_string(port), AF_UNSPEC, SOCK_STREAM, 0, AI_PASSIVE);
      addresses.insert(addresses.end(), found.begin(), found.end());
    }
  }
  server srv(new server_state(loop, stream_state::kind::tcp, std::move(handler), options));
  auto& s = srv.state();
  // Bind each address once. With port 0 the first bind picks the port and
  // the others take the same one, so that the server has one port.
  int chosen = port;
  std::vector<std::string> seen;
  for (auto& a : addresses) {
    auto* sa = reinterpret_cast<sockaddr*>(&a.addr);
    // Every address was resolved with the port asked for: an address seen
    // before formats the same here, before the port chosen by a first bind
    // is written in (a host listed twice, or two names of one address).
    auto key = detail::format_address(sa);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      continue;
    }
    seen.push_back(std::move(key));
    if (sa->sa_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(sa)->sin_port = htons(static_cast<std::uint16_t>(chosen));
    } else if (sa->sa_family == AF_INET6) {
      reinterpret_cast<sockaddr_in6*>(sa)->sin6_port = htons(static_cast<std::uint16_t>(chosen));
    } else {
      continue;
    }
    const auto text = detail::format_address(sa);
    auto* h = reinterpret_cast<uv_tcp_t*>(s.add_listener());
    int rc = options.reuse_port ? open_reusing_port(h, sa->sa_family) : 0;
    // An IPv6 socket takes only IPv6, so that "::" and "0.0.0.0" can share a port.
    if (rc == 0) {
      rc = uv_tcp_bind(h, sa, sa->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    }
    if (rc == 0) {
      rc = s.listen_last(options.backlog);
    }
    if (rc == UV_EADDRNOTAVAIL || rc == UV_EAFNOSUPPORT) {
      s.drop_last_listener(); // that family is not enabled here (asyncio skips it too)
      continue;
    }
    if (rc < 0) {
      srv.close();
      detail::throw_io_error(rc, "bind to", text);
    }
    if (chosen == 0) {
      chosen = s.port_of(s.listener_count() - 1);
    }
  }
  if (s.listener_count() == 0) {
    srv.close();
    detail::throw_io_error(UV_EADDRNOTAVAIL, "bind to", where);
  }
  s.set_serving();
  s.set_name(shown(chosen), chosen);
  co_return srv;
}

// ---- Unix-domain sockets ----

namespace detail {
namespace {

/// Binds a new Unix socket at `path` and gives it to `pipe`. Not
/// uv_pipe_bind: libuv unlinks the path it bound when the handle closes,
/// whatever file is there by then; the server removes only its own.
int bind_unix(uv_pipe_t* pipe, const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    return UV_ENAMETOOLONG;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return uv_translate_sys_error(errno);
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int rc = uv_translate_sys_error(errno);
    ::close(fd);
    return rc;
  }
  if (const int rc = uv_pipe_open(pipe, fd); rc < 0) {
    ::close(fd);
    ::unlink(path.c_str());
    return rc;
  }
  return 0;
}

} // namespace
} // namespace detail

task<std::pair<stream_reader, stream_writer>> open_unix_connection(std::string path, connection_options options) {
  auto& loop = detail::running_loop_checked("open_unix_connection");
  detail::ignore_sigpipe_once();
  detail::refuse_tcp_options(options, "open_unix_connection");
  auto tls = detail::tls_settings(options, "open_unix_connection", {});
  stream_ref ref(new stream_state(loop, stream_state::kind::pipe, options.limit));
  const int rc = co_await detail::connect_awaiter(*ref.get(), nullptr, &path);
  if (rc < 0) {
    detail::throw_io_error(rc, "connect to", path);
  }
  ref.get()->set_peer(path);
  co_return co_await detail::connected(ref, std::move(tls));
}

task<server> start_unix_server(connection_handler handler, std::string path, server_options options) {
  detail::check_server_args(handler, options, "start_unix_server");
  if (path.empty()) {
    throw error("start_unix_server: the socket path is empty");
  }
  if (options.reuse_port) {
    throw error("start_unix_server: reuse_port applies to TCP servers only");
  }
  auto& loop = detail::running_loop_checked("start_unix_server");
  detail::ignore_sigpipe_once();
  // A socket file left by an earlier server would make bind fail: remove it,
  // and only if it is a socket.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    ::unlink(path.c_str());
  }
  server srv(new server_state(loop, stream_state::kind::pipe, std::move(handler), options));
  auto& s = srv.state();
  int rc = detail::bind_unix(reinterpret_cast<uv_pipe_t*>(s.add_listener()), path);
  if (rc == 0) {
    s.set_unix_path(path);
    rc = s.listen_last(options.backlog);
  }
  if (rc < 0) {
    srv.close();
    detail::throw_io_error(rc, "bind to", path);
  }
  s.set_serving();
  s.set_name(path, 0);
  co_return srv;
}

} // namespace simul
