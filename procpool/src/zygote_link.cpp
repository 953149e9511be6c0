// The parent's link to its zygote (zygote_link.hpp). The zygote's own side
// is zygote.cpp; the exec'd zygote's start, zygote_exec.cpp.

#include "zygote_link.hpp"

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

namespace simul::detail::procpool {

namespace {
zygote_config config_of(const process_pool_options& options) {
  zygote_config config;
  config.initializer = options.initializer;
  config.shm_threshold = options.shm_threshold;
  config.keep_worker_heap = options.keep_worker_heap;
  config.worker_spin_ns = static_cast<long>(std::chrono::nanoseconds(options.worker_spin).count());
  return config;
}
} // namespace

zygote_link::zygote_link(const process_pool_options& options) {
  become_zygote_if_asked(); // a pool made by a static initializer of an exec'd zygote-to-be
  if (options.start == start_method::exec) {
    auto started = exec_zygote(options);
    m_pid = started.pid;
    m_control = std::move(started.control);
  } else {
    fork_zygote(options);
  }
  register_pool_fd(m_control.get());
}

void zygote_link::fork_zygote(const process_pool_options& options) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    throw simul::error(std::string("process_pool: socketpair failed: ") + std::strerror(errno));
  }
  const auto inherited = pool_fds_snapshot();
  const auto config = config_of(options);
  // The zygote is forked here, before the pool starts any thread, so every
  // later fork happens in a process that has exactly one thread.
  // Output still buffered in stdio would be copied into the zygote and
  // written again by every worker that flushes or exits (as multiprocessing,
  // only the standard streams: flushing every stream would wait on a lock
  // another thread holds while it reads).
  std::fflush(stdout);
  std::fflush(stderr);
  payload_cache_before_fork();
  shared_blocks_before_fork();
  const pid_t pid = ::fork();
  if (pid != 0) {
    shared_blocks_parent_after_fork();
    payload_cache_parent_after_fork();
  }
  if (pid < 0) {
    const int error = errno;
    ::close(pair[0]);
    ::close(pair[1]);
    throw simul::error(std::string("process_pool: fork failed: ") + std::strerror(error));
  }
  if (pid == 0) {
    shared_blocks_child_after_fork();
    payload_cache_child_after_fork(); // the parent's cached memfds are the parent's to write
    ::close(pair[0]);
    for (const int fd : inherited) {
      ::close(fd);
    }
    zygote_main(pair[1], config);
  }
  ::close(pair[1]);
  m_pid = pid;
  m_control.reset(pair[0]);
}

zygote_link::~zygote_link() { close_and_reap(); }

bool zygote_link::spawn(std::uint64_t worker, int channel) {
  control_msg msg;
  msg.kind = control_kind::spawn;
  msg.worker = worker;
  return m_open && send_control(m_control.get(), msg, channel);
}

bool zygote_link::kill(std::uint64_t worker, int signal) {
  control_msg msg;
  msg.kind = control_kind::kill;
  msg.worker = worker;
  msg.value = signal;
  return m_open && send_control(m_control.get(), msg);
}

int zygote_link::receive(control_msg& msg) {
  unique_fd ignored;
  return receive_control(m_control.get(), msg, ignored, false);
}

void zygote_link::lost() {
  m_open = false;
  int status = 0;
  if (::waitpid(m_pid, &status, WNOHANG) == m_pid) {
    m_reaped = true;
  }
}

void zygote_link::close_and_reap() {
  if (m_control) {
    unregister_pool_fd(m_control.get());
    m_control.reset(); // the zygote sees EOF, kills what is left and exits
  }
  m_open = false;
  if (m_reaped || m_pid <= 0) {
    return;
  }
  int status = 0;
  while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
  }
  m_reaped = true;
}

} // namespace simul::detail::procpool
