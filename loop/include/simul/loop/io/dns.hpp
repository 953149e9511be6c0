#pragma once

// Name resolution as coroutines: getaddrinfo and getnameinfo (asyncio's
// loop.getaddrinfo / loop.getnameinfo).
//
// Both run the system's resolver on libuv's thread pool, so the loop keeps
// serving while a lookup waits on the network. A numeric host with a numeric
// port is answered at once, without a lookup. Failures throw `dns_error`
// naming the host and carrying the resolver's EAI_* code and text.
// Cancelling the awaiting task abandons the lookup at once (libuv cancels it
// if it has not started, or its answer is dropped when it comes).
//
// Constants (AF_INET, SOCK_STREAM, AI_*, NI_*) come from <sys/socket.h> and
// <netdb.h>.
//
// Thread-safety: loop thread only, inside a task. Lifetime: the results are
// plain values.

#include <simul/loop/io/io_error.hpp>
#include <simul/loop/task.hpp>

#include <string>
#include <vector>

namespace simul {

/// One answer of `getaddrinfo`.
struct address_info {
  int family = 0;             ///< AF_INET or AF_INET6
  int socktype = 0;           ///< SOCK_STREAM, SOCK_DGRAM...
  int protocol = 0;           ///< IPPROTO_TCP...
  std::string host;           ///< the numeric address ("127.0.0.1", "::1")
  int port = 0;               ///< the port
  std::string canonical_name; ///< with AI_CANONNAME, on the first answer
};

/// Hints for `getaddrinfo`; 0 means any.
struct getaddrinfo_options {
  int family = 0;
  int socktype = 0;
  int protocol = 0;
  int flags = 0; ///< AI_* flags
};

/// Resolves `host` and `service` (a port number or a service name).
/// Throws `dns_error` when the name does not resolve.
[[nodiscard]] task<std::vector<address_info>> getaddrinfo(std::string host, std::string service,
                                                          getaddrinfo_options options = {});

/// What `getnameinfo` answers.
struct name_info {
  std::string host;    ///< the host name (or the numeric address with NI_NUMERICHOST)
  std::string service; ///< the service name (or the port with NI_NUMERICSERV)
};

/// Looks up the name of the numeric address `host` and `port`; `flags` are
/// NI_* flags. Throws `dns_error` (and for a host that is not a numeric
/// address, `dns_error` with EAI_NONAME).
[[nodiscard]] task<name_info> getnameinfo(std::string host, int port, int flags = 0);

} // namespace simul
