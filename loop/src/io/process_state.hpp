#pragma once

// The state of one child process (subprocess.hpp's `process`) and how the
// loop watches it: libuv's process handle when uv_spawn started the child,
// or a poll handle on the child's pidfd when posix_spawn did (spawn.hpp).
//
// Thread-safety: loop thread only. Lifetime: shared by the `process` copies
// (counted in users) and by its handle while the handle is open; the last of
// them frees it. The handle closes once the child has exited (the exit seen
// and reaped), or when the loop closes: then a background thread reaps the
// child when it exits.

#include "io/io_internal.hpp"
#include "io/spawn.hpp"

#include <simul/loop/detail/wait_list.hpp>

#include <optional>
#include <string>

namespace simul::detail {

class process_state {
 public:
  process_state(event_loop& loop, std::string program);
  process_state(const process_state&) = delete;
  process_state& operator=(const process_state&) = delete;

  /// libuv's path: uv_spawn with `options`. Returns libuv's error (< 0) or 0.
  int spawn(uv_process_options_t& options);
  /// posix_spawn's path: starts the child and watches its pidfd. Throws
  /// `io_error` if it cannot start or cannot be watched (the child is then
  /// killed and reaped).
  void spawn(const child_setup& setup);

  [[nodiscard]] int pid() const noexcept { return m_pid; }
  [[nodiscard]] const std::optional<int>& returncode() const noexcept { return m_returncode; }
  [[nodiscard]] const std::string& program() const noexcept { return m_program; }
  wait_list& exit_waiters() noexcept { return m_exit_waiters; }

  /// Sends `sig` unless the child has exited. Throws `io_error`.
  void send_signal(int sig) const;

  void acquire() noexcept { ++m_users; }
  void release() noexcept;

  /// The loop is closing with the child still running: closes the handle
  /// the usual way, so that the close callback frees what nobody holds.
  /// Gives the child's pid, for someone else to reap it.
  static pid_t close_at_loop_close(uv_handle_t* h) noexcept;
  /// Whether `h` is the poll handle of a child's pidfd.
  static bool is_child_watch(const uv_handle_t* h) noexcept;

 private:
  struct box;
  ~process_state() = default;

  [[nodiscard]] std::string describe() const;
  void watch(int pidfd);
  void exited(int returncode);

  static void on_exit(uv_process_t* h, int64_t exit_status, int term_signal);
  static void on_pidfd_readable(uv_poll_t* h, int status, int events);
  static void on_close(uv_handle_t* h);

  event_loop* m_loop;
  std::string m_program;
  box* m_box;
  int m_pid = 0;
  std::optional<int> m_returncode;
  unsigned m_users = 0;
  bool m_close_started = false;
  wait_list m_exit_waiters;
};

} // namespace simul::detail
