// Errors, addresses and name resolution shared by the loop's I/O.

#include "io/io_internal.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <mutex>

namespace simul::detail {

namespace {

bool is_dns_code(int code) noexcept { return code <= UV__EAI_ADDRFAMILY && code >= UV__EAI_PROTOCOL; }

bool is_connection_code(int code) noexcept {
  switch (code) {
  case UV_ECONNREFUSED:
  case UV_ECONNRESET:
  case UV_ECONNABORTED:
  case UV_EPIPE:
  case UV_ETIMEDOUT:
  case UV_ENETUNREACH:
  case UV_EHOSTUNREACH:
  case UV_ENOTCONN:
  case UV_EOF:
    return true;
  default:
    return false;
  }
}

} // namespace

int errno_of(int uv_code) noexcept {
  switch (uv_code) {
  case UV__EAI_ADDRFAMILY:
#ifdef EAI_ADDRFAMILY
    return EAI_ADDRFAMILY;
#else
    return EAI_FAMILY;
#endif
  case UV__EAI_AGAIN:
    return EAI_AGAIN;
  case UV__EAI_BADFLAGS:
    return EAI_BADFLAGS;
  case UV__EAI_CANCELED:
#ifdef EAI_CANCELED
    return EAI_CANCELED;
#else
    return EAI_FAIL;
#endif
  case UV__EAI_FAIL:
    return EAI_FAIL;
  case UV__EAI_FAMILY:
    return EAI_FAMILY;
  case UV__EAI_MEMORY:
    return EAI_MEMORY;
  case UV__EAI_NODATA:
#ifdef EAI_NODATA
    return EAI_NODATA;
#else
    return EAI_NONAME;
#endif
  case UV__EAI_NONAME:
    return EAI_NONAME;
  case UV__EAI_OVERFLOW:
    return EAI_OVERFLOW;
  case UV__EAI_SERVICE:
    return EAI_SERVICE;
  case UV__EAI_SOCKTYPE:
    return EAI_SOCKTYPE;
  default:
    break;
  }
  if (uv_code == UV_EOF) {
    return ECONNRESET; // an unexpected end of a connection
  }
  return uv_code < 0 ? -uv_code : uv_code;
}

std::string error_text(int uv_code) { return std::string(uv_strerror(uv_code)) + " (" + uv_err_name(uv_code) + ')'; }

std::exception_ptr make_io_error(int uv_code, const std::string& what, const std::string& address) {
  std::string message = what;
  if (!address.empty()) {
    message += ' ';
    message += address;
  }
  message += ": ";
  message += error_text(uv_code);
  return make_io_error_message(uv_code, message, address);
}

std::exception_ptr make_io_error_message(int uv_code, const std::string& message, const std::string& address) {
  const int code = errno_of(uv_code);
  if (is_dns_code(uv_code)) {
    return std::make_exception_ptr(dns_error(code, message, address));
  }
  if (is_connection_code(uv_code)) {
    return std::make_exception_ptr(connection_error(code, message, address));
  }
  return std::make_exception_ptr(io_error(code, message, address));
}

void throw_io_error(int uv_code, const std::string& what, const std::string& address) {
  std::rethrow_exception(make_io_error(uv_code, what, address));
}

std::string join_host_port(const std::string& host, int port) {
  if (host.find(':') != std::string::npos) {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

std::string format_address(const sockaddr* sa) {
  std::array<char, INET6_ADDRSTRLEN + 1> text{};
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    uv_ip4_name(in, text.data(), text.size());
    return join_host_port(text.data(), ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    uv_ip6_name(in6, text.data(), text.size());
    return join_host_port(text.data(), ntohs(in6->sin6_port));
  }
  return {};
}

void throw_descriptor_error(int code, const char* who, int fd, const std::string& what) {
  const auto name = "fd " + std::to_string(fd);
  throw io_error(code, std::string(who) + ": " + name + " " + what + " (" + uv_err_name(-code) + ")", name);
}

void throw_not_adopted(int uv_code, const char* who, int fd) {
  throw_descriptor_error(errno_of(uv_code), who, fd,
                         uv_code == UV_EEXIST ? "is already used by this loop" : "cannot be adopted");
}

namespace {

/// The text of a socket address: "host:port", a path, "@name" for Linux's
/// abstract namespace, "" for an unnamed Unix socket.
std::string address_text(const sockaddr_storage& addr, socklen_t len) {
  if (addr.ss_family != AF_UNIX) {
    return format_address(reinterpret_cast<const sockaddr*>(&addr));
  }
  const auto* un = reinterpret_cast<const sockaddr_un*>(&addr);
  const auto offset = offsetof(sockaddr_un, sun_path);
  if (len <= offset) {
    return {};
  }
  const std::size_t n = len - offset;
  if (un->sun_path[0] == '\0') {
    std::string name;
    if (n > 1) {
      name.reserve(n);
      name.push_back('@');
      name.append(un->sun_path + 1, n - 1);
    }
    return name;
  }
  return {un->sun_path, ::strnlen(un->sun_path, n)};
}

} // namespace

adopted_socket inspect_socket(int fd, int type, const char* who) {
  if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) {
    throw_descriptor_error(EBADF, who, fd, "is not an open descriptor");
  }
  int value = 0;
  socklen_t size = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &size) != 0) {
    const int code = errno;
    throw_descriptor_error(code, who, fd, code == ENOTSOCK ? "is not a socket" : "cannot be read as a socket");
  }
  if (value != type) {
    throw_descriptor_error(EPROTOTYPE, who, fd,
                           type == SOCK_STREAM ? "is not a stream socket (SOCK_STREAM)"
                                               : "is not a datagram socket (SOCK_DGRAM)");
  }
  adopted_socket out;
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int code = errno;
    throw_descriptor_error(code, who, fd, "has no local address");
  }
  out.family = addr.ss_family;
  if (out.family != AF_INET && out.family != AF_INET6 && out.family != AF_UNIX) {
    throw_descriptor_error(EAFNOSUPPORT, who, fd, "is not an IPv4, IPv6 or Unix-domain socket");
  }
  out.local = address_text(addr, len);
  if (type == SOCK_STREAM) {
    size = sizeof value;
    out.listening = ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &size) == 0 && value != 0;
  }
  sockaddr_storage peer{};
  len = sizeof peer;
  if (!out.listening && ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    out.connected = true;
    out.peer = address_text(peer, len);
  }
  return out;
}

void ignore_sigpipe_once() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      std::signal(SIGPIPE, SIG_IGN);
    }
  });
}

uv_buf_t read_scratch(std::size_t) noexcept {
  thread_local std::array<char, 64 * 1024> scratch;
  return uv_buf_init(scratch.data(), static_cast<unsigned>(scratch.size()));
}

// ---- getaddrinfo ----

namespace {

class gai_awaiter;
struct gai_op : request_op<uv_getaddrinfo_t, gai_awaiter> {};

class gai_awaiter final : public request_awaiter<gai_awaiter, gai_op, true> {
 public:
  gai_awaiter(event_loop& loop, std::string host, std::string service, addrinfo hints)
      : m_loop(loop), m_host(std::move(host)), m_service(std::move(service)), m_hints(hints) {}

  int start(gai_op& op) {
    return uv_getaddrinfo(uv_loop(m_loop), &op.req, &on_done, m_host.empty() ? nullptr : m_host.c_str(),
                          m_service.empty() ? nullptr : m_service.c_str(), &m_hints);
  }
  std::vector<resolved_address> await_resume() {
    check_cancel();
    if (m_status < 0) {
      throw_io_error(m_status, "getaddrinfo", where());
    }
    return std::move(m_result);
  }

 private:
  /// "host:service" as given (a service name stays a name), IPv6 bracketed.
  std::string where() const {
    if (m_service.empty()) {
      return m_host;
    }
    const bool v6 = m_host.find(':') != std::string::npos;
    return (v6 ? "[" + m_host + "]" : m_host) + ":" + m_service;
  }

  static void on_done(uv_getaddrinfo_t* req, int status, addrinfo* res) {
    finish(static_cast<gai_op*>(req->data), status, [res](gai_awaiter& self) {
      for (auto* ai = res; ai != nullptr; ai = ai->ai_next) {
        resolved_address r;
        std::memcpy(&r.addr, ai->ai_addr, std::min<std::size_t>(ai->ai_addrlen, sizeof r.addr));
        r.family = ai->ai_family;
        r.socktype = ai->ai_socktype;
        r.protocol = ai->ai_protocol;
        if (ai->ai_canonname != nullptr) {
          r.canonical_name = ai->ai_canonname;
        }
        self.m_result.push_back(std::move(r));
      }
    });
    uv_freeaddrinfo(res);
  }

  event_loop& m_loop;
  std::string m_host;
  std::string m_service;
  addrinfo m_hints;
  std::vector<resolved_address> m_result;
};

bool parse_numeric(const std::string& host, int port, resolved_address& out) {
  if (host.empty()) {
    return false;
  }
  std::string h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
  }
  if (uv_ip4_addr(h.c_str(), port, reinterpret_cast<sockaddr_in*>(&out.addr)) == 0) {
    out.family = AF_INET;
    return true;
  }
  if (uv_ip6_addr(h.c_str(), port, reinterpret_cast<sockaddr_in6*>(&out.addr)) == 0) {
    out.family = AF_INET6;
    return true;
  }
  return false;
}

bool numeric_port(const std::string& service, int& port) {
  if (service.empty() || service.size() > 5) {
    return false;
  }
  port = 0;
  for (char c : service) {
    if (c < '0' || c > '9') {
      return false;
    }
    port = port * 10 + (c - '0');
  }
  return port <= 65535;
}

} // namespace

std::vector<resolved_address> interleave_families(std::vector<resolved_address> addresses, std::size_t first) {
  std::vector<std::vector<resolved_address>> families;
  for (auto& a : addresses) {
    auto it = std::find_if(families.begin(), families.end(),
                           [&a](const std::vector<resolved_address>& f) { return f.front().family == a.family; });
    if (it == families.end()) {
      families.emplace_back();
      it = families.end() - 1;
    }
    it->push_back(std::move(a));
  }
  std::vector<resolved_address> out;
  if (families.empty()) {
    return out;
  }
  out.reserve(addresses.size());
  std::vector<std::size_t> taken(families.size(), 0);
  for (; taken[0] + 1 < first && taken[0] < families[0].size(); ++taken[0]) {
    out.push_back(std::move(families[0][taken[0]]));
  }
  while (out.size() < addresses.size()) {
    for (std::size_t f = 0; f < families.size(); ++f) {
      if (taken[f] < families[f].size()) {
        out.push_back(std::move(families[f][taken[f]++]));
      }
    }
  }
  return out;
}

task<std::vector<resolved_address>> resolve(std::string host, std::string service, int family, int socktype,
                                            int protocol, int hints_flags) {
  auto& loop = running_loop_checked("getaddrinfo");
  int port = 0;
  if (numeric_port(service, port) && (hints_flags & AI_CANONNAME) == 0) {
    resolved_address r;
    if (parse_numeric(host, port, r) && (family == AF_UNSPEC || family == r.family)) {
      r.socktype = socktype;
      r.protocol = protocol;
      co_return std::vector<resolved_address>{r};
    }
  }
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = socktype;
  hints.ai_protocol = protocol;
  hints.ai_flags = hints_flags;
  co_return co_await gai_awaiter(loop, std::move(host), std::move(service), hints);
}

} // namespace simul::detail
