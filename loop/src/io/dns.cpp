// getaddrinfo and getnameinfo as coroutines.

#include "io/io_internal.hpp"

#include <simul/loop/io/dns.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <array>
#include <cstring>

namespace simul {

namespace detail {
namespace {

class gni_awaiter;
struct gni_op : request_op<uv_getnameinfo_t, gni_awaiter> {};

class gni_awaiter final : public request_awaiter<gni_awaiter, gni_op, true> {
 public:
  gni_awaiter(event_loop& loop, const sockaddr_storage& addr, int flags, std::string where)
      : m_loop(loop), m_addr(addr), m_flags(flags), m_where(std::move(where)) {}

  int start(gni_op& op) {
    return uv_getnameinfo(uv_loop(m_loop), &op.req, &on_done, reinterpret_cast<const sockaddr*>(&m_addr), m_flags);
  }
  name_info await_resume() {
    check_cancel();
    if (m_status < 0) {
      throw_io_error(m_status, "getnameinfo", m_where);
    }
    return std::move(m_result);
  }

 private:
  static void on_done(uv_getnameinfo_t* req, int status, const char* host, const char* service) {
    finish(static_cast<gni_op*>(req->data), status, [host, service](gni_awaiter& self) {
      self.m_result.host = host != nullptr ? host : "";
      self.m_result.service = service != nullptr ? service : "";
    });
  }

  event_loop& m_loop;
  sockaddr_storage m_addr;
  int m_flags;
  std::string m_where;
  name_info m_result;
};

std::string numeric_host(const sockaddr_storage& addr) {
  std::array<char, INET6_ADDRSTRLEN + 1> text{};
  if (addr.ss_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&addr), text.data(), text.size());
  } else if (addr.ss_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&addr), text.data(), text.size());
  }
  return text.data();
}

int port_of(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  }
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  return 0;
}

} // namespace
} // namespace detail

task<std::vector<address_info>> getaddrinfo(std::string host, std::string service, getaddrinfo_options options) {
  auto found = co_await detail::resolve(std::move(host), std::move(service), options.family, options.socktype,
                                        options.protocol, options.flags);
  std::vector<address_info> out;
  out.reserve(found.size());
  for (auto& r : found) {
    address_info a;
    a.family = r.family;
    a.socktype = r.socktype;
    a.protocol = r.protocol;
    a.host = detail::numeric_host(r.addr);
    a.port = detail::port_of(r.addr);
    a.canonical_name = std::move(r.canonical_name);
    out.push_back(std::move(a));
  }
  co_return out;
}

task<name_info> getnameinfo(std::string host, int port, int flags) {
  auto& loop = detail::running_loop_checked("getnameinfo");
  const auto where = detail::join_host_port(host, port);
  if (port < 0 || port > 65535) {
    throw error("getnameinfo: port " + std::to_string(port) + " is out of range");
  }
  sockaddr_storage addr{};
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
    detail::throw_io_error(UV_EAI_NONAME, "getnameinfo (not a numeric address)", where);
  }
  co_return co_await detail::gni_awaiter(loop, addr, flags, where);
}

} // namespace simul
