#pragma once

// The parent's link to its zygote (private): the start of the zygote (a
// fork, or an exec of the program: zygote_exec.cpp), the control socket that
// asks it to fork and signal workers and reports their births and deaths, and
// the reaping of the zygote at the end.
//
// Thread-safety: made and destroyed by the pool's owner; every other call
// comes from the pool's I/O loop thread.
// Lifetime: the zygote lives until the link is closed (it sees EOF on its
// control socket, kills what workers are left and exits) and is reaped then.

#include "protocol.hpp"

#include <simul/procpool/options.hpp>

#include <sys/types.h>

#include <cstdint>

namespace simul::detail::procpool {

/// A zygote that has been started, and the parent's end of its control socket.
struct started_zygote {
  pid_t pid = -1;
  unique_fd control;
};

/// start_method::exec: spawns /proc/self/exe as the zygote and completes the
/// handshake. Throws `code_address_error` if the initializer is not in the
/// executable, `simul::error` (nothing left running) if the zygote cannot be
/// started, ends before it is ready, or runs another build.
started_zygote exec_zygote(const process_pool_options& options);

/// In a process spawned by `exec_zygote`, serves as the zygote and never
/// returns; anywhere else returns at once. Runs from a static initializer of
/// the library and at the start of every pool's construction.
void become_zygote_if_asked();

class zygote_link {
 public:
  /// Starts the zygote as `options.start` says. Throws simul::error if it cannot.
  explicit zygote_link(const process_pool_options& options);
  ~zygote_link();
  zygote_link(const zygote_link&) = delete;
  zygote_link& operator=(const zygote_link&) = delete;

  [[nodiscard]] pid_t pid() const noexcept { return m_pid; }
  [[nodiscard]] int fd() const noexcept { return m_control.get(); }
  /// False once the zygote was lost (EOF or a failed write on the link).
  [[nodiscard]] bool open() const noexcept { return m_open; }

  /// Asks for worker `worker` on `channel` (its end of a socketpair). False if the zygote is gone.
  bool spawn(std::uint64_t worker, int channel);
  /// Asks for `signal` to be sent to worker `worker`. False if the zygote is gone.
  bool kill(std::uint64_t worker, int signal);
  /// One report (non-blocking): 1 got one, -1 none now, 0 or -2 the zygote is gone.
  int receive(control_msg& msg);
  /// The zygote is gone: the link is closed for sending; reaps it if it ended.
  void lost();
  /// Closes the link and waits for the zygote to exit. Idempotent.
  void close_and_reap();

 private:
  void fork_zygote(const process_pool_options& options);

  pid_t m_pid = -1;
  unique_fd m_control;
  bool m_open = true;
  bool m_reaped = false;
};

} // namespace simul::detail::procpool
