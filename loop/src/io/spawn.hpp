#pragma once

// Starting a child with glibc's posix_spawn and watching it through a pidfd
// (subprocess.cpp's fast path).
//
// libuv 1.44's uv_spawn forks, copying the parent's page tables, and reaps
// on SIGCHLD by trying waitpid on every child it watches. posix_spawn starts
// the child with clone(CLONE_VM|CLONE_VFORK) (no copy: the parent waits the
// few microseconds until the exec), reports a failed exec through its return
// value, and reaps the failed child itself; a pidfd (Linux ≥ 5.3) turns
// readable when the child exits, so a poll handle on the loop sees each exit
// alone and nothing handles SIGCHLD.
//
// Every function here may be called from any thread; none keeps state but
// the once-per-process choice of `posix_spawn_enabled`.

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace simul::detail {

/// Whether children start here (true) or with libuv's uv_spawn (false).
/// Decided once per process: false when the kernel has no pidfd_open
/// (ENOSYS, or refused by a seccomp filter), or when the environment
/// variable SIMUL_SPAWN is "uv" (how the tests force libuv's path).
bool posix_spawn_enabled() noexcept;

/// What `child_setup::stdio` holds for a standard descriptor of the child
/// that is not one of ours.
inline constexpr int k_child_devnull = -1; ///< opened on /dev/null in the child
inline constexpr int k_child_stdout = -2;  ///< the child's own fd 1 (stderr only)

/// What the child is started with.
struct child_setup {
  const char* path = nullptr;                 ///< the program's path (see find_program)
  char* const* argv = nullptr;                ///< null-terminated
  char* const* envp = nullptr;                ///< null-terminated; null: ours
  const char* cwd = nullptr;                  ///< null: ours
  int stdio[3] = {0, 1, 2};                   ///< our descriptor for each of the child's 0–2, or k_child_*
  const std::vector<int>* pass_fds = nullptr; ///< kept under their numbers (open, above 2)
  bool new_session = false;                   ///< setsid() in the child
};

/// The path `program` runs from: itself when it has a slash, else the first
/// regular executable file named so in `search_path` (the PATH the child
/// will have; null: "/bin:/usr/bin"), as execvp finds it in the child: a
/// relative entry is relative to `cwd` (null: ours). Throws `io_error`
/// naming `program`: ENOENT if there is none, EACCES if the only ones
/// found cannot be executed.
std::string find_program(const std::string& program, const char* search_path, const char* cwd);

/// Starts the child; returns its pid. The child starts with every signal at
/// its default action and none blocked, whatever this process does. Throws
/// `io_error` naming `program` (or `setup.cwd`, when that is what is
/// missing) if it cannot start; nothing is left behind then.
pid_t spawn_child(const child_setup& setup, const std::string& program);

/// Throws the `io_error` of a child that could not start with errno `code`:
/// "spawn <program>: ..." naming the program, or "spawn <program> in
/// directory <cwd>: ..." naming `cwd` when it is no directory we can enter.
[[noreturn]] void throw_spawn_error(int code, const std::string& program, const char* cwd);

/// pidfd_open(pid, 0): the descriptor (close-on-exec), or -errno.
int open_pidfd(pid_t pid) noexcept;

/// pidfd_send_signal(pidfd, sig): 0 or -errno.
int signal_pidfd(int pidfd, int sig) noexcept;

/// Reaps the child `pid` behind `pidfd` if it has exited, and gives its
/// exit status (the exit code, or minus the signal that ended it); nullopt
/// while it runs. 255 if someone else reaped it (as asyncio reports an
/// unknown child).
std::optional<int> reap_exited(int pidfd, pid_t pid) noexcept;

/// Ends a child that was started but cannot be watched: SIGKILL, then reaps
/// it (blocking for the moment it takes to die).
void kill_and_reap(pid_t pid) noexcept;

} // namespace simul::detail
