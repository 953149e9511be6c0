// Starting a child with posix_spawn and watching it through a pidfd (spawn.hpp).

#include "io/spawn.hpp"

#include "io/io_internal.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <string_view>

extern char** environ; // NOLINT: POSIX declares it nowhere else

namespace simul::detail {

namespace {

/// The file actions and attributes of one posix_spawn call, destroyed with it.
class spawn_actions {
 public:
  spawn_actions() {
    ::posix_spawn_file_actions_init(&m_actions);
    ::posix_spawnattr_init(&m_attr);
  }
  spawn_actions(const spawn_actions&) = delete;
  spawn_actions& operator=(const spawn_actions&) = delete;
  ~spawn_actions() {
    ::posix_spawnattr_destroy(&m_attr);
    ::posix_spawn_file_actions_destroy(&m_actions);
  }
  posix_spawn_file_actions_t* actions() noexcept { return &m_actions; }
  posix_spawnattr_t* attr() noexcept { return &m_attr; }

 private:
  posix_spawn_file_actions_t m_actions{};
  posix_spawnattr_t m_attr{};
};

bool close_on_exec(int fd) noexcept {
  const int flags = ::fcntl(fd, F_GETFD);
  return flags >= 0 && (flags & FD_CLOEXEC) != 0;
}

/// The child's descriptors: 0–2 from `setup.stdio` in order, then the
/// passed ones. Returns 0 or the errno of the file action that failed.
int add_descriptors(posix_spawn_file_actions_t* actions, const child_setup& setup) {
  for (int i = 0; i < 3; ++i) {
    const int from = setup.stdio[i];
    int rc = 0;
    if (from == k_child_devnull) {
      rc = ::posix_spawn_file_actions_addopen(actions, i, "/dev/null", O_RDWR, 0);
    } else if (from == k_child_stdout) {
      rc = ::posix_spawn_file_actions_adddup2(actions, 1, i);
    } else if (from != i || close_on_exec(i)) {
      // dup2 of a descriptor onto itself clears its close-on-exec flag
      // (glibc ≥ 2.29); one not open here stays closed in the child.
      rc = ::posix_spawn_file_actions_adddup2(actions, from, i);
    }
    if (rc != 0) {
      return rc;
    }
  }
  if (setup.pass_fds != nullptr) {
    for (const int fd : *setup.pass_fds) {
      if (close_on_exec(fd)) {
        if (const int rc = ::posix_spawn_file_actions_adddup2(actions, fd, fd); rc != 0) {
          return rc;
        }
      }
    }
  }
  return 0;
}

/// Every signal at its default action and none blocked in the child (as
/// libuv's children start), whatever this process ignores or blocks: a
/// child must not inherit the loop's SIGPIPE ignored, say.
int add_signal_defaults(posix_spawnattr_t* attr, bool new_session) {
  sigset_t none;
  sigset_t all;
  ::sigemptyset(&none);
  ::sigfillset(&all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (new_session) {
    flags |= POSIX_SPAWN_SETSID;
  }
  int rc = ::posix_spawnattr_setsigmask(attr, &none);
  if (rc == 0) {
    rc = ::posix_spawnattr_setsigdefault(attr, &all);
  }
  if (rc == 0) {
    rc = ::posix_spawnattr_setflags(attr, flags);
  }
  return rc;
}

/// Whether `dir` can be the child's working directory (checked only to say
/// which of the program and the directory a failure was about).
bool usable_directory(const char* dir) noexcept {
  struct stat st {};
  return ::stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && ::faccessat(AT_FDCWD, dir, X_OK, AT_EACCESS) == 0;
}

} // namespace

bool posix_spawn_enabled() noexcept {
  static const bool enabled = [] {
    if (const char* forced = std::getenv("SIMUL_SPAWN"); forced != nullptr && std::string_view(forced) == "uv") {
      return false;
    }
    const int fd = open_pidfd(::getpid());
    if (fd >= 0) {
      ::close(fd);
    }
    return fd != -ENOSYS && fd != -EPERM; // EPERM: a seccomp filter refuses the call
  }();
  return enabled;
}

std::string find_program(const std::string& program, const char* search_path, const char* cwd) {
  if (program.find('/') != std::string::npos) {
    return program;
  }
  std::string_view dirs = search_path != nullptr ? search_path : "/bin:/usr/bin";
  bool denied = false;
  while (true) {
    const auto colon = dirs.find(':');
    const auto dir = dirs.substr(0, colon);
    // An empty entry is the current directory, as for execvp.
    const std::string candidate = (dir.empty() ? std::string(".") : std::string(dir)) + "/" + program;
    // The child resolves a relative candidate after its chdir: so do we.
    const std::string here = cwd != nullptr && candidate[0] != '/' ? std::string(cwd) + "/" + candidate : candidate;
    struct stat st {};
    if (::stat(here.c_str(), &st) == 0) {
      if (S_ISREG(st.st_mode) && ::faccessat(AT_FDCWD, here.c_str(), X_OK, AT_EACCESS) == 0) {
        return candidate;
      }
      denied = true;
    }
    if (colon == std::string_view::npos) {
      break;
    }
    dirs.remove_prefix(colon + 1);
  }
  throw_io_error(denied ? -EACCES : -ENOENT, "spawn", program);
}

pid_t spawn_child(const child_setup& setup, const std::string& program) {
  spawn_actions s;
  int rc = add_descriptors(s.actions(), setup);
  if (rc == 0 && setup.cwd != nullptr) {
    rc = ::posix_spawn_file_actions_addchdir_np(s.actions(), setup.cwd);
  }
  if (rc == 0) {
    rc = add_signal_defaults(s.attr(), setup.new_session);
  }
  pid_t pid = 0;
  if (rc == 0) {
    // glibc reports a failed chdir or exec here, having reaped the child.
    rc = ::posix_spawn(&pid, setup.path, s.actions(), s.attr(), setup.argv,
                       setup.envp != nullptr ? setup.envp : environ);
  }
  if (rc != 0) {
    throw_spawn_error(rc, program, setup.cwd);
  }
  return pid;
}

void throw_spawn_error(int code, const std::string& program, const char* cwd) {
  if (cwd != nullptr && !usable_directory(cwd)) {
    throw_io_error(-code, "spawn " + program + " in directory", cwd);
  }
  throw_io_error(-code, "spawn", program);
}

int open_pidfd(pid_t pid) noexcept {
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  return fd >= 0 ? static_cast<int>(fd) : -errno;
}

int signal_pidfd(int pidfd, int sig) noexcept {
  return ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) == 0 ? 0 : -errno;
}

std::optional<int> reap_exited(int pidfd, pid_t pid) noexcept {
  siginfo_t info{};
  int rc = 0;
  do {
    rc = ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0 && errno == EINVAL) { // Linux 5.3 has pidfds but waits for them by pid
    do {
      rc = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG);
    } while (rc < 0 && errno == EINTR);
  }
  if (rc < 0) {
    return 255; // ECHILD: reaped elsewhere, its status is lost
  }
  if (info.si_pid == 0) {
    return std::nullopt; // still running
  }
  return info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
}

void kill_and_reap(pid_t pid) noexcept {
  ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

} // namespace simul::detail
