// start_method::exec: the zygote as a fresh exec of the program.
//
// The parent spawns /proc/self/exe (argv[0] as the program's) with the
// zygote's end of the control socket kept open and named in the environment
// (SIMUL_PROCPOOL_ZYGOTE=<fd>:<parent pid>). In the new process the static
// initializer below (or the first process_pool constructor, if a static
// initializer of the program makes a pool earlier) sees the variable, removes
// it at once, so the workers' own children are ordinary processes, and
// becomes the zygote: main never runs there. The handshake compares the two
// builds before any code offset is trusted.
//
// This file is always linked into a program that makes a process_pool:
// zygote_link.cpp, which process_pool's constructor reaches, calls into it.

#include "zygote_link.hpp"

#include <simul/procpool/detail/code_address.hpp>
#include <simul/procpool/detail/testing.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <ios>
#include <string>
#include <vector>

namespace simul::detail::procpool {

namespace {
constexpr char k_env_name[] = "SIMUL_PROCPOOL_ZYGOTE";
constexpr int k_exit_bad_setup = 72;

std::string& forged_build() {
  static std::string value;
  return value;
}

std::string own_build() {
  try {
    return executable_build_id();
  } catch (const std::exception& e) {
    return std::string("unknown (") + e.what() + ")";
  }
}

template <std::size_t N>
void copy_text(char (&out)[N], const std::string& text) {
  const std::size_t n = std::min(text.size(), N - 1);
  std::memcpy(out, text.data(), n);
  out[n] = '\0';
}

// ------------------------------------------------------------------ the parent's side

/// The process's name (the main thread's comm), for the zygote to take.
std::string program_comm() {
  std::ifstream file("/proc/self/comm");
  std::string name;
  std::getline(file, name);
  return name;
}

zygote_setup setup_of(const process_pool_options& options) {
  zygote_setup setup;
  if (options.initializer != nullptr) {
    setup.initializer = code_offset(options.initializer); // throws code_address_error
  }
  setup.shm_threshold = options.shm_threshold;
  setup.keep_worker_heap = options.keep_worker_heap ? 1 : 0;
  setup.worker_spin_ns = std::chrono::nanoseconds(options.worker_spin).count();
  copy_text(setup.comm, program_comm());
  copy_text(setup.build, forged_build().empty() ? executable_build_id() : forged_build());
  return setup;
}

/// The environment of this process, minus any variable of ours, plus `extra`.
std::vector<char*> child_environment(std::string& extra) {
  std::vector<char*> env;
  const std::size_t prefix = sizeof(k_env_name) - 1;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    if (std::strncmp(*entry, k_env_name, prefix) != 0 || (*entry)[prefix] != '=') {
      env.push_back(*entry);
    }
  }
  env.push_back(extra.data());
  env.push_back(nullptr);
  return env;
}

/// Starts /proc/self/exe with `fd` open in it. Throws simul::error.
pid_t spawn_zygote(int fd) {
  std::string variable =
      std::string(k_env_name) + "=" + std::to_string(fd) + ":" + std::to_string(static_cast<long>(::getpid()));
  auto env = child_environment(variable);
  char* argv[] = {program_invocation_name, nullptr};
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_adddup2(&actions, fd, fd); // same number: clears close-on-exec in the child
  pid_t pid = -1;
  const int error = ::posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv, env.data());
  ::posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    throw simul::error(std::string("process_pool: cannot start the zygote (posix_spawn /proc/self/exe): ") +
                       std::strerror(error));
  }
  return pid;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) {
    return "exited with status " + std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  }
  return "ended";
}

/// Kills (if `kill`) and reaps `pid`; returns how it ended.
std::string reap(pid_t pid, bool kill) {
  if (kill) {
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return "could not be reaped";
    }
  }
  return describe_status(status);
}

/// Sends the setup and waits for the zygote's answer. Throws simul::error
/// (the zygote reaped) unless it serves the same build.
void handshake(unique_fd& control, pid_t pid, const zygote_setup& setup) {
  zygote_ready ready;
  long got = -1;
  if (::send(control.get(), &setup, sizeof setup, MSG_NOSIGNAL) == static_cast<long>(sizeof setup)) {
    do {
      got = ::recv(control.get(), &ready, sizeof ready, 0);
    } while (got < 0 && errno == EINTR);
  }
  if (got != static_cast<long>(sizeof ready) || ready.magic != k_setup_magic) {
    control.reset();
    throw simul::error("process_pool: the exec'd zygote " + reap(pid, true) +
                       " before it was ready (the program's static initializers run again in an exec'd zygote: did "
                       "one fail? start_method::fork does not run them)");
  }
  if (ready.same_build != 1) {
    control.reset();
    reap(pid, false);
    ready.build[k_build_text - 1] = '\0';
    throw simul::error(std::string("process_pool: the exec'd zygote runs another build of the program (this "
                                   "process: ") +
                       setup.build + ", /proc/self/exe: " + ready.build +
                       "): /proc/self/exe is not the program that runs; use start_method::fork");
  }
}

// ------------------------------------------------------------------ the zygote's side

/// The control socket named by the variable's value, or -1 if it does not
/// name one this process was started with by a pool.
int control_socket_of(const char* value) {
  int fd = -1;
  long parent = -1;
  if (value == nullptr || std::sscanf(value, "%d:%ld", &fd, &parent) != 2 || parent != ::getppid()) {
    return -1;
  }
  int type = 0;
  socklen_t size = sizeof type;
  if (fd < 0 || ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) != 0 || type != SOCK_SEQPACKET) {
    return -1;
  }
  return fd;
}

[[noreturn]] void serve_as_zygote(int fd) {
  const std::ios_base::Init streams; // std::cout and friends set up for tasks, whichever initializers ran
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  zygote_setup setup;
  long got = -1;
  do {
    got = ::recv(fd, &setup, sizeof setup, 0);
  } while (got < 0 && errno == EINTR);
  if (got != static_cast<long>(sizeof setup) || setup.magic != k_setup_magic) {
    ::_exit(k_exit_bad_setup);
  }
  setup.build[k_build_text - 1] = '\0';
  setup.comm[sizeof setup.comm - 1] = '\0';
  zygote_ready ready;
  copy_text(ready.build, own_build());
  ready.same_build = std::strcmp(ready.build, setup.build) == 0 ? 1 : 0;
  zygote_config config;
  config.naming = code_naming::executable;
  config.shm_threshold = setup.shm_threshold;
  config.keep_worker_heap = setup.keep_worker_heap != 0;
  config.worker_spin_ns = setup.worker_spin_ns;
  if (ready.same_build == 1 && setup.initializer != k_no_initializer) {
    try {
      config.initializer = code_from_offset<void (*)()>(setup.initializer);
    } catch (const code_address_error&) {
      ready.same_build = 0;
    }
  }
  const bool sent = ::send(fd, &ready, sizeof ready, MSG_NOSIGNAL) == static_cast<long>(sizeof ready);
  if (!sent || ready.same_build != 1) {
    ::_exit(0);
  }
  ::prctl(PR_SET_NAME, setup.comm);
  zygote_main(fd, config);
}

// Runs among the program's static initializers: a process started as a
// zygote never gets to main.
__attribute__((constructor)) void enter_zygote_at_start() { become_zygote_if_asked(); }
} // namespace

void become_zygote_if_asked() {
  const char* value = std::getenv(k_env_name);
  if (value == nullptr) {
    return;
  }
  const int fd = control_socket_of(value);
  ::unsetenv(k_env_name); // the workers' own children are not zygotes
  if (fd >= 0) {
    serve_as_zygote(fd);
  }
}

started_zygote exec_zygote(const process_pool_options& options) {
  const zygote_setup setup = setup_of(options);
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    throw simul::error(std::string("process_pool: socketpair failed: ") + std::strerror(errno));
  }
  unique_fd control(pair[0]);
  unique_fd theirs(pair[1]);
  const pid_t pid = spawn_zygote(theirs.get());
  theirs.reset();
  handshake(control, pid, setup);
  return {pid, std::move(control)};
}

} // namespace simul::detail::procpool

namespace simul::detail {
void forge_build_id_for_tests(const std::string& build) { procpool::forged_build() = build; }
} // namespace simul::detail
