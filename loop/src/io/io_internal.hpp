#pragma once

// What the loop's I/O sources share: turning libuv's error codes into simul's
// exceptions, formatting socket addresses, and the "detached request"
// pattern for one-shot libuv requests (connect, getaddrinfo, fs, write).
//
// A detached request lives on the heap and belongs to its libuv callback,
// not to the awaiting frame: the awaiter points at it and it points back at
// the awaiter. When the task is cancelled (or its frame destroyed while the
// loop closes) the awaiter cuts the link and asks libuv to cancel; whatever
// libuv reports later lands in a request nobody waits for, which the callback
// then frees. So a cancellation is always immediate, and no callback ever
// reaches a freed frame.

#include "loop_internal.hpp"

#include <simul/loop/io_error.hpp>
#include <simul/loop/task.hpp>

#include <sys/socket.h>

#include <exception>
#include <string>
#include <vector>

namespace simul::detail {

/// The errno value behind a libuv error code (libuv's codes are -errno on
/// Unix); for getaddrinfo errors the EAI_* value.
int errno_of(int uv_code) noexcept;

/// "<what> <address>: <system text> (<NAME>)", as the right exception type:
/// connection_error for connection failures, dns_error for getaddrinfo
/// failures, io_error otherwise.
std::exception_ptr make_io_error(int uv_code, const std::string& what, const std::string& address);
[[noreturn]] void throw_io_error(int uv_code, const std::string& what, const std::string& address);

/// "127.0.0.1:80", "[::1]:80"; "" for an unknown family.
std::string format_address(const sockaddr* sa);
/// "host:port", with brackets around an IPv6 host.
std::string join_host_port(const std::string& host, int port);

/// Sets SIGPIPE to ignored once per process if it has the default action, as
/// Python does at startup: a write to a closed socket or pipe must fail with
/// EPIPE, not kill the program.
void ignore_sigpipe_once() noexcept;

/// One address from a name lookup.
struct resolved_address {
  sockaddr_storage addr{};
  int family = 0;
  int socktype = 0;
  int protocol = 0;
  std::string canonical_name;
};

/// Resolves host/service with libuv's getaddrinfo (on its thread pool);
/// numeric hosts are parsed at once without a lookup. Throws dns_error.
/// `hints_flags` are AI_* flags.
task<std::vector<resolved_address>> resolve(std::string host, std::string service, int family, int socktype,
                                            int protocol, int hints_flags);

/// A loop-thread scratch buffer that libuv reads into before the data is
/// appended where it belongs (alloc_cb and read_cb run back to back).
uv_buf_t read_scratch(std::size_t suggested) noexcept;

} // namespace simul::detail
