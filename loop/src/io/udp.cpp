// UDP endpoints: a uv_udp_t receiving into a bounded queue, sends as requests.

#include "io/counted_ref_impl.hpp"
#include "io/io_internal.hpp"

#include <simul/loop/io/udp.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <deque>

namespace simul::detail {

class udp_state {
 public:
  udp_state(event_loop& loop, datagram_options options) : m_loop(&loop), m_options(options) {
    uv_udp_init(uv_loop(loop), &m_handle->udp);
    m_handle->owner = this;
  }
  udp_state(const udp_state&) = delete;
  udp_state& operator=(const udp_state&) = delete;

  uv_udp_t* handle() noexcept { return &m_handle->udp; }
  event_loop& loop() const noexcept { return *m_loop; }

  int bind(const sockaddr* addr) {
    unsigned flags = m_options.reuse_address ? UV_UDP_REUSEADDR : 0;
    const int rc = uv_udp_bind(handle(), addr, flags);
    return rc == 0 ? start() : rc;
  }

  /// Takes the socket `fd` (see <simul/loop/io/socket_fd.hpp>); libuv takes it
  /// only on success (EEXIST: the loop already watches it).
  int adopt(int fd) {
    const int rc = uv_udp_open(handle(), fd);
    return rc == 0 ? start() : rc;
  }

  std::string sockname_now() {
    sockaddr_storage addr{};
    int len = sizeof addr;
    if (m_handle == nullptr || uv_udp_getsockname(handle(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return m_name;
    }
    return format_address(reinterpret_cast<sockaddr*>(&addr));
  }
  int port() {
    const auto name = sockname_now();
    const auto colon = name.rfind(':');
    return colon == std::string::npos ? 0 : std::atoi(name.c_str() + colon + 1);
  }

  void close() noexcept {
    m_closing = true;
    m_receivers.signal_all();
    if (m_handle == nullptr || m_close_started) {
      return;
    }
    m_close_started = true;
    uv_close(reinterpret_cast<uv_handle_t*>(handle()), &on_close);
  }

  void acquire() noexcept { ++m_users; }
  void release() noexcept {
    if (--m_users > 0) {
      return;
    }
    if (m_handle == nullptr) {
      delete this;
      return;
    }
    if (m_loop->is_closed()) {
      delete m_handle; // the loop closed it without our callback
      m_handle = nullptr;
      delete this;
      return;
    }
    close(); // the close callback frees us
  }

  std::deque<datagram> queue;
  std::uint64_t dropped = 0;
  int recv_error = 0;
  wait_list& receivers() noexcept { return m_receivers; }
  [[nodiscard]] bool closing() const noexcept { return m_closing; }
  [[nodiscard]] const std::string& name() const noexcept { return m_name; }

 private:
  /// The socket is bound (or adopted): apply the options, start receiving.
  int start() {
    int rc = m_options.broadcast ? uv_udp_set_broadcast(handle(), 1) : 0;
    if (rc == 0) {
      rc = uv_udp_recv_start(handle(), &on_alloc, &on_recv);
    }
    if (rc == 0) {
      m_name = sockname_now();
    }
    return rc;
  }

  struct handle_box {
    uv_udp_t udp{};
    udp_state* owner = nullptr;
  };
  ~udp_state() = default;

  static void on_alloc(uv_handle_t*, std::size_t suggested, uv_buf_t* buf) noexcept { *buf = read_scratch(suggested); }
  static void on_recv(uv_udp_t* h, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr, unsigned) noexcept {
    auto* self = reinterpret_cast<handle_box*>(h)->owner;
    if (nread < 0) {
      self->recv_error = static_cast<int>(nread);
      self->m_receivers.signal_all();
      return;
    }
    if (addr == nullptr) {
      return; // nothing more to read this time
    }
    if (self->queue.size() >= self->m_options.max_queued) {
      ++self->dropped;
      return;
    }
    try {
      datagram d;
      d.data.assign(buf->base, static_cast<std::size_t>(nread));
      const auto where = format_address(addr);
      const auto colon = where.rfind(':');
      d.host = where.substr(0, colon);
      if (!d.host.empty() && d.host.front() == '[') {
        d.host = d.host.substr(1, d.host.size() - 2);
      }
      d.port = std::atoi(where.c_str() + colon + 1);
      self->queue.push_back(std::move(d));
    } catch (...) {
      ++self->dropped;
      return;
    }
    if (auto* w = self->m_receivers.front(); w != nullptr) {
      w->notify();
    }
  }
  static void on_close(uv_handle_t* h) noexcept {
    auto* box = reinterpret_cast<handle_box*>(h);
    auto* self = box->owner;
    delete box;
    self->m_handle = nullptr;
    if (self->m_users == 0) {
      delete self;
    }
  }

  event_loop* m_loop;
  datagram_options m_options;
  handle_box* m_handle = new handle_box();
  std::string m_name;
  unsigned m_users = 0;
  bool m_closing = false;
  bool m_close_started = false;
  wait_list m_receivers;
};

template class counted_ref<udp_state>;

namespace {

class receive_awaiter final : public parked_waiter {
 public:
  explicit receive_awaiter(datagram_endpoint ep, udp_state& s) : m_keep(std::move(ep)), m_state(s) {}
  bool await_ready() const noexcept { return !m_state.queue.empty() || m_state.recv_error != 0 || m_state.closing(); }
  bool await_suspend(std::coroutine_handle<> h) {
    if (!m_state.receivers().empty()) {
      throw error("datagram_endpoint: another task is already waiting in receive_from");
    }
    return park(m_state.receivers(), h);
  }
  datagram await_resume() {
    if (m_task != nullptr) {
      check_cancel();
    }
    if (!m_state.queue.empty()) {
      auto d = std::move(m_state.queue.front());
      m_state.queue.pop_front();
      return d;
    }
    if (m_state.recv_error != 0) {
      const int rc = std::exchange(m_state.recv_error, 0);
      throw_io_error(rc, "receive on", m_state.name());
    }
    throw error("datagram_endpoint: receive_from on a closed endpoint (" + m_state.name() + ")");
  }

 private:
  datagram_endpoint m_keep;
  udp_state& m_state;
};

class send_awaiter;
struct send_op : request_op<uv_udp_send_t, send_awaiter> {
  std::string data;
};

class send_awaiter final : public request_awaiter<send_awaiter, send_op, false> {
 public:
  send_awaiter(udp_state& s, std::string data, const sockaddr_storage& addr, std::string where)
      : m_state(s), m_data(std::move(data)), m_addr(addr), m_where(std::move(where)) {}

  bool await_ready() {
    // Fast path: the socket takes the datagram now.
    uv_buf_t buf = uv_buf_init(m_data.data(), static_cast<unsigned>(m_data.size()));
    const int rc = uv_udp_try_send(m_state.handle(), &buf, 1, reinterpret_cast<const sockaddr*>(&m_addr));
    if (rc >= 0) {
      return true;
    }
    if (rc != UV_EAGAIN) {
      m_status = rc;
      return true;
    }
    return false;
  }
  // A cancelled send detaches only: the datagram may still go out, it is the system's now.
  int start(send_op& op) {
    op.data = std::move(m_data);
    uv_buf_t buf = uv_buf_init(op.data.data(), static_cast<unsigned>(op.data.size()));
    return uv_udp_send(&op.req, m_state.handle(), &buf, 1, reinterpret_cast<const sockaddr*>(&m_addr), &on_sent);
  }
  void await_resume() {
    if (m_task != nullptr) {
      check_cancel();
    }
    if (m_status < 0) {
      throw_io_error(m_status, "send to", m_where);
    }
  }

 private:
  static void on_sent(uv_udp_send_t* req, int status) { finish(static_cast<send_op*>(req->data), status); }

  udp_state& m_state;
  std::string m_data;
  sockaddr_storage m_addr;
  std::string m_where;
};

task<void> send_to_impl(datagram_endpoint /*keeps s alive*/, udp_state* s, std::string data, std::string host,
                        int port) {
  if (port < 0 || port > 65535) {
    throw error("send_to: port " + std::to_string(port) + " is out of range");
  }
  if (s->closing()) {
    throw error("send_to: the endpoint " + s->name() + " is closed");
  }
  auto where = join_host_port(host, port);
  auto addresses = co_await resolve(std::move(host), std::to_string(port), AF_UNSPEC, SOCK_DGRAM, 0, 0);
  if (s->closing()) {
    throw error("send_to: the endpoint " + s->name() + " is closed");
  }
  co_await send_awaiter(*s, std::move(data), addresses.front().addr, std::move(where));
}

task<datagram> receive_impl(datagram_endpoint keep, udp_state* s) { co_return co_await receive_awaiter(keep, *s); }

} // namespace
} // namespace simul::detail

namespace simul {

detail::udp_state& datagram_endpoint::state() const {
  if (!m_state) {
    throw error("datagram_endpoint: the endpoint is empty");
  }
  return *m_state.get();
}

task<void> datagram_endpoint::send_to(std::string data, std::string host, int port) {
  return detail::send_to_impl(*this, &state(), std::move(data), std::move(host), port);
}
task<datagram> datagram_endpoint::receive_from() { return detail::receive_impl(*this, &state()); }
std::size_t datagram_endpoint::queued() const { return state().queue.size(); }
std::uint64_t datagram_endpoint::dropped() const { return state().dropped; }
int datagram_endpoint::port() const { return state().port(); }
std::string datagram_endpoint::sockname() const { return state().sockname_now(); }
void datagram_endpoint::close() { state().close(); }
bool datagram_endpoint::is_closing() const { return state().closing(); }

task<datagram_endpoint> create_datagram_endpoint(std::string local_host, int local_port, datagram_options options) {
  if (local_port < 0 || local_port > 65535) {
    throw error("create_datagram_endpoint: port " + std::to_string(local_port) + " is out of range");
  }
  if (options.max_queued == 0) {
    throw error("create_datagram_endpoint: max_queued must be positive");
  }
  auto& loop = detail::running_loop_checked("create_datagram_endpoint");
  const auto host = local_host.empty() ? std::string("0.0.0.0") : local_host;
  const auto where = detail::join_host_port(host, local_port);
  auto addresses = co_await detail::resolve(host, std::to_string(local_port), AF_UNSPEC, SOCK_DGRAM, 0, AI_PASSIVE);
  datagram_endpoint ep(new detail::udp_state(loop, options));
  const int rc = ep.m_state.get()->bind(reinterpret_cast<const sockaddr*>(&addresses.front().addr));
  if (rc < 0) {
    ep.close();
    detail::throw_io_error(rc, "bind to", where);
  }
  co_return ep;
}

task<datagram_endpoint> create_datagram_endpoint(socket_fd sock, datagram_options options) {
  constexpr const char* who = "create_datagram_endpoint";
  if (options.max_queued == 0) {
    throw error("create_datagram_endpoint: max_queued must be positive");
  }
  if (options.reuse_address) {
    throw error("create_datagram_endpoint: reuse_address must be set before a socket is bound; set SO_REUSEADDR on an "
                "adopted one");
  }
  auto& loop = detail::running_loop_checked(who);
  const auto info = detail::inspect_socket(sock.fd, SOCK_DGRAM, who);
  if (info.family == AF_UNIX) {
    detail::throw_descriptor_error(EAFNOSUPPORT, who, sock.fd, "is a Unix-domain socket, not a UDP one");
  }
  if (info.connected) {
    detail::throw_descriptor_error(EISCONN, who, sock.fd, "is connected (an endpoint sends to an address each time)");
  }
  datagram_endpoint ep(new detail::udp_state(loop, options));
  if (const int rc = ep.m_state.get()->adopt(sock.fd); rc < 0) {
    ep.close();
    detail::throw_not_adopted(rc, who, sock.fd);
  }
  co_return ep;
}

} // namespace simul
