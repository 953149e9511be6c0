// Servers (<simul/loop/io/server.hpp>): starting them over TCP, on an
// adopted socket or a Unix-domain socket, and `server`'s calls. What a
// server does once started is in server_state.cpp.

#include "io/server_state.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include <algorithm>

namespace simul::detail {

namespace {

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

/// "host:port" of each host, joined by ", " (0.0.0.0 for an empty host).
std::string shown_hosts(const std::vector<std::string>& hosts, int port) {
  std::string out;
  for (const auto& host : hosts) {
    out += (out.empty() ? "" : ", ") + join_host_port(host.empty() ? "0.0.0.0" : host, port);
  }
  return out;
}

/// Every address of every host, with `port` (an empty host: 0.0.0.0 and ::).
task<std::vector<resolved_address>> resolve_listen_addresses(std::vector<std::string> hosts, int port) {
  std::vector<resolved_address> addresses;
  for (const auto& host : hosts) {
    for (const auto& name : host.empty() ? std::vector<std::string>{"0.0.0.0", "::"} : std::vector<std::string>{host}) {
      auto found = co_await resolve(name, std::to_string(port), AF_UNSPEC, SOCK_STREAM, 0, AI_PASSIVE);
      addresses.insert(addresses.end(), found.begin(), found.end());
    }
  }
  co_return addresses;
}

/// Sets the port of an IPv4 or IPv6 address; false for another family.
bool set_port(sockaddr* sa, int port) noexcept {
  if (sa->sa_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(sa)->sin_port = htons(static_cast<std::uint16_t>(port));
    return true;
  }
  if (sa->sa_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(sa)->sin6_port = htons(static_cast<std::uint16_t>(port));
    return true;
  }
  return false;
}

/// Binds a new listener of `s` to `sa` and listens: 0 or libuv's error.
int listen_at(server_state& s, const sockaddr* sa, const server_options& options) {
  auto* h = reinterpret_cast<uv_tcp_t*>(s.add_listener());
  int rc = options.reuse_port ? open_reusing_port(h, sa->sa_family) : 0;
  // An IPv6 socket takes only IPv6, so that "::" and "0.0.0.0" can share a port.
  if (rc == 0) {
    rc = uv_tcp_bind(h, sa, sa->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
  }
  if (rc == 0) {
    rc = s.listen_last(options.backlog);
  }
  return rc;
}

/// Listens on each address once, all on one port: with port 0 the first
/// bind picks the port and the others take the same one. Skips a family the
/// machine has not enabled; any other failure closes `srv` and throws.
/// Gives the port.
int listen_on(server& srv, std::vector<resolved_address>& addresses, int port, const server_options& options) {
  auto& s = srv.state();
  int chosen = port;
  std::vector<std::string> seen;
  for (auto& a : addresses) {
    auto* sa = reinterpret_cast<sockaddr*>(&a.addr);
    // Every address was resolved with the port asked for: an address seen
    // before formats the same here, before the port chosen by a first bind
    // is written in (a host listed twice, or two names of one address).
    auto key = format_address(sa);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      continue;
    }
    seen.push_back(std::move(key));
    if (!set_port(sa, chosen)) {
      continue;
    }
    const int rc = listen_at(s, sa, options);
    if (rc == UV_EADDRNOTAVAIL || rc == UV_EAFNOSUPPORT) {
      s.drop_last_listener(); // that family is not enabled here (asyncio skips it too)
      continue;
    }
    if (rc < 0) {
      srv.close();
      throw_io_error(rc, "bind to", format_address(sa));
    }
    if (chosen == 0) {
      chosen = s.port_of(s.listener_count() - 1);
    }
  }
  return chosen;
}

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

// ---- server_wait_awaiter ----

server_wait_awaiter::server_wait_awaiter(server_state* s, bool all_done) : m_server(s), m_all_done(all_done) {
  s->acquire_internal();
}
server_wait_awaiter::server_wait_awaiter(server_wait_awaiter&& o) noexcept
    : parked_waiter(), m_server(std::exchange(o.m_server, nullptr)), m_all_done(o.m_all_done) {}
server_wait_awaiter::~server_wait_awaiter() {
  unlink();
  if (m_server != nullptr) {
    m_server->release_internal();
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
using detail::stream_state;

// ---- server ----

detail::server_state& server::state() const {
  if (!m_state) {
    throw error("server: the server object is empty");
  }
  return *m_state.get();
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

// ---- starting servers ----

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
  const auto k = detail::kind_of(info);
  server srv(new server_state(loop, k, std::move(handler), options));
  auto& s = srv.state();
  if (const int rc = detail::open_adopted(k, s.add_listener(), sock.fd); rc < 0) {
    s.drop_last_listener(); // its handle never had the descriptor
    srv.close();
    detail::throw_not_adopted(rc, who, sock.fd);
  }
  if (const int rc = s.listen_last(options.backlog); rc < 0) {
    srv.close(); // the listener owns the descriptor now: closing it closes the socket
    detail::throw_io_error(rc, "listen on", detail::shown_name(info.local, sock.fd));
  }
  s.set_serving();
  // A TCP listener's address as it is now: listen() binds an unbound socket to a free port.
  const auto names = k == stream_state::kind::tcp ? s.socknames() : std::vector<std::string>{};
  s.set_name(names.empty() ? detail::shown_name(info.local, sock.fd) : names.front(),
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
  auto addresses = co_await detail::resolve_listen_addresses(hosts, port);
  server srv(new server_state(loop, stream_state::kind::tcp, std::move(handler), options));
  const int chosen = detail::listen_on(srv, addresses, port, options);
  if (srv.state().listener_count() == 0) {
    srv.close();
    detail::throw_io_error(UV_EADDRNOTAVAIL, "bind to", detail::shown_hosts(hosts, port));
  }
  srv.state().set_serving();
  srv.state().set_name(detail::shown_hosts(hosts, chosen), chosen);
  co_return srv;
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
