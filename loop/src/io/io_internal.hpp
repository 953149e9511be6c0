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

#include <simul/loop/io/io_error.hpp>
#include <simul/loop/task.hpp>

#include <sys/socket.h>

#include <cstddef>
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
/// The same with the whole message given.
std::exception_ptr make_io_error_message(int uv_code, const std::string& message, const std::string& address);
/// "<system text> (<NAME>)": "connection refused (ECONNREFUSED)".
std::string error_text(int uv_code);
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

/// asyncio's interleave: `first` addresses of the first family, then one of
/// each family in turn, each family keeping its resolved order.
std::vector<resolved_address> interleave_families(std::vector<resolved_address> addresses, std::size_t first);

/// What an adopted socket is (see <simul/loop/io/socket_fd.hpp>).
struct adopted_socket {
  int family = 0; ///< AF_INET, AF_INET6 or AF_UNIX
  bool listening = false;
  bool connected = false;
  std::string local; ///< "host:port", or the socket path ("" if unnamed)
  std::string peer;  ///< likewise; "" when not connected or unnamed
};

/// Checks that `fd` is an open socket of `type` (SOCK_STREAM or SOCK_DGRAM)
/// and of a family the loop serves, and says what it is. Reads only: the
/// descriptor is left as it was. Throws `io_error` (EBADF, ENOTSOCK,
/// EPROTOTYPE, EAFNOSUPPORT) through `throw_descriptor_error`.
adopted_socket inspect_socket(int fd, int type, const char* who);
/// Throws io_error(code, "<who>: fd <fd> <what> (<NAME>)", "fd <fd>").
[[noreturn]] void throw_descriptor_error(int code, const char* who, int fd, const std::string& what);
/// The same for libuv's refusal to open `fd` (`uv_code` < 0; EEXIST: the
/// loop already watches it).
[[noreturn]] void throw_not_adopted(int uv_code, const char* who, int fd);

/// The detached request of the file comment, for an awaiter over one libuv
/// request (connect, getaddrinfo, getnameinfo, a UDP send).
///
///   struct my_op : request_op<uv_getaddrinfo_t, my_awaiter> { /* more state */ };
///   class my_awaiter final : public request_awaiter<my_awaiter, my_op, true> {
///     int start(my_op& op);   // issues the request with &op.req; < 0: libuv's error
///     static void on_done(uv_getaddrinfo_t* req, int status, ...) {
///       finish(static_cast<my_op*>(req->data), status, [&](my_awaiter& self) { /* take results */ });
///     }
///   };
///
/// `CancelRequest`: whether cutting the link also asks libuv to cancel the
/// request (uv_cancel works for thread-pool requests, not for sockets).
template <class Req, class Awaiter>
struct request_op {
  Req req{};
  Awaiter* waiter = nullptr;
};

template <class Derived, class Op, bool CancelRequest>
class request_awaiter : public waiter {
 public:
  request_awaiter() = default;
  request_awaiter(const request_awaiter&) = delete;
  request_awaiter& operator=(const request_awaiter&) = delete;
  ~request_awaiter() { detach(); }

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    if (!suspend_on(h)) {
      return false;
    }
    auto* op = new Op();
    op->waiter = static_cast<Derived*>(this);
    op->req.data = op;
    if (const int rc = static_cast<Derived*>(this)->start(*op); rc < 0) {
      delete op;
      m_status = rc;
      wake();
      return true;
    }
    m_op = op;
    return true;
  }
  bool on_cancel() noexcept override {
    detach();
    abort_and_wake();
    return true;
  }

 protected:
  /// From the request's callback: if the awaiter is still there, gives it
  /// `status`, runs `take(awaiter)` when the status is a success (a throw
  /// becomes UV_ENOMEM) and wakes it; then frees the op.
  template <class Take>
  static void finish(Op* op, int status, Take&& take) noexcept {
    if (Derived* self = op->waiter; self != nullptr) {
      auto& base = static_cast<request_awaiter&>(*self);
      base.m_op = nullptr;
      base.m_status = status;
      if (status >= 0) {
        try {
          take(*self);
        } catch (...) {
          base.m_status = UV_ENOMEM;
        }
      }
      base.wake();
    }
    delete op;
  }
  static void finish(Op* op, int status) noexcept {
    finish(op, status, [](Derived&) {});
  }

  int m_status = 0;

 private:
  void detach() noexcept {
    if (m_op != nullptr) {
      m_op->waiter = nullptr;
      if constexpr (CancelRequest) {
        uv_cancel(reinterpret_cast<uv_req_t*>(&m_op->req)); // best effort: the callback frees the op
      }
      m_op = nullptr;
    }
  }

  Op* m_op = nullptr;
};

/// A loop-thread scratch buffer that libuv reads into before the data is
/// appended where it belongs (alloc_cb and read_cb run back to back).
uv_buf_t read_scratch(std::size_t suggested) noexcept;

} // namespace simul::detail
