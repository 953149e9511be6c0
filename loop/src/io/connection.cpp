// Connecting (<simul/loop/io/connection.hpp>): open_connection over TCP
// (one address after another, or staggered: Happy Eyeballs), on an adopted
// socket, and open_unix_connection.

#include "io/stream_state.hpp"
#include "io/tls.hpp"

#include <simul/loop/io/connection.hpp>
#include <simul/loop/task_group.hpp>
#include <simul/loop/task_handle.hpp>
#include <simul/loop/wait.hpp>

#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>

namespace simul::detail {

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

/// The first of `addresses` to accept, tried one after another. Throws if
/// none accepts.
task<stream_ref> connect_in_turn(event_loop& loop, std::vector<resolved_address> addresses, std::size_t limit,
                                 std::vector<resolved_address> locals, std::string where, bool all_errors) {
  std::vector<attempt_result> failures;
  for (auto& a : addresses) {
    auto r = co_await attempt_connect(loop, std::move(a), limit, locals);
    if (r.ref) {
      co_return std::move(r.ref);
    }
    failures.push_back(std::move(r));
  }
  throw_connect_failure(where, failures, all_errors);
}

/// Takes the finished attempts out of `pending`: the failures go to
/// `failures`, the first connection is returned (a second one in the same
/// iteration closes with its task).
stream_ref take_finished(std::vector<task_handle<attempt_result>>& pending, std::vector<attempt_result>& failures) {
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
    }
  }
  pending = std::move(running);
  return winner;
}

/// The first of `addresses` to accept, the attempts staggered by `delay`
/// (Happy Eyeballs). Throws if none accepts.
task<stream_ref> connect_staggered(event_loop& loop, std::vector<resolved_address> addresses, std::size_t limit,
                                   std::vector<resolved_address> locals, std::chrono::milliseconds delay,
                                   std::string where, bool all_errors) {
  std::vector<attempt_result> failures;
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
    (void)co_await wait(pending, return_when::first_completed, next < addresses.size() ? delay : no_timeout);
    if (auto winner = take_finished(pending, failures)) {
      co_return winner;
    }
    if (pending.empty() && next == addresses.size()) {
      throw_connect_failure(where, failures, all_errors);
    }
  }
}

/// The first of `addresses` to accept: tried one after another, or with
/// `delay`, staggered (Happy Eyeballs). Throws if none accepts.
task<stream_ref> connect_first(event_loop& loop, std::vector<resolved_address> addresses, std::size_t limit,
                               std::vector<resolved_address> locals, std::optional<std::chrono::milliseconds> delay,
                               std::string where, bool all_errors) {
  if (!delay || addresses.size() < 2) {
    return connect_in_turn(loop, std::move(addresses), limit, std::move(locals), std::move(where), all_errors);
  }
  return connect_staggered(loop, std::move(addresses), limit, std::move(locals), *delay, std::move(where), all_errors);
}

/// Checks what `open_connection(host, port)` alone takes, before anything starts.
void check_tcp_options(int port, const connection_options& options) {
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
}

/// Drops the addresses no local address can reach (asyncio's rule); throws
/// if none is left.
void keep_reachable(std::vector<resolved_address>& addresses, const std::vector<resolved_address>& locals,
                    const std::string& where, const std::string& local) {
  std::erase_if(addresses, [&locals](const resolved_address& a) {
    return std::none_of(locals.begin(), locals.end(), [&a](const resolved_address& l) { return l.family == a.family; });
  });
  if (addresses.empty()) {
    throw io_error(EADDRNOTAVAIL,
                   "connect to " + where + ": no address of the same family as the local address " + local, where);
  }
}

} // namespace

} // namespace simul::detail

namespace simul {

using detail::stream_ref;
using detail::stream_state;

task<std::pair<stream_reader, stream_writer>> open_connection(std::string host, int port, connection_options options) {
  constexpr const char* who = "open_connection";
  auto& loop = detail::running_loop_checked(who);
  detail::ignore_sigpipe_once();
  detail::check_tcp_options(port, options);
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
    detail::keep_reachable(addresses, locals, where, local);
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
  const auto k = detail::kind_of(info);
  stream_ref ref(new stream_state(loop, k, options.limit));
  auto& s = *ref.get();
  if (const int rc = detail::open_adopted(k, s.stream(), sock.fd); rc < 0) {
    detail::throw_not_adopted(rc, who, sock.fd);
  }
  if (k == stream_state::kind::tcp) {
    uv_tcp_nodelay(reinterpret_cast<uv_tcp_t*>(s.stream()), 1);
  }
  s.set_peer(detail::shown_name(info.peer, sock.fd));
  co_return co_await detail::connected(ref, std::move(tls));
}

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

} // namespace simul
