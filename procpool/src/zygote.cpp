// The two kinds of child process: the zygote, which forks and reaps workers on
// the parent's request, and the worker, which runs tasks.
//
// A worker is always forked from the zygote; the zygote is forked from the
// program (start_method::fork) or is a fresh exec of it entered before main
// (start_method::exec, zygote_exec.cpp). Both use only raw system calls and
// malloc (which glibc makes safe after fork) and leave with _exit: the
// program's atexit handlers and static destructors belong to the program.

#include "protocol.hpp"

#include <simul/procpool/detail/task.hpp>
#include <simul/procpool/detail/worker_heap.hpp>
#include <simul/trace/detail/recorder.hpp>

#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace simul::detail {

namespace {
int g_worker_channel = -1;
std::uint64_t g_worker_pid = 0; ///< getpid() once: every answer carries it
code_naming g_code_naming = code_naming::anchored;

constexpr int k_exit_parent_gone = 0;
constexpr int k_exit_init_failed = 3;
constexpr int k_exit_bad_frame = 70;

/// The worker's end of its socket, read in bulk: every frame the parent has
/// written so far arrives in one call, and frames are taken from the buffer
/// in place. Descriptors are queued in arrival order; a frame takes its
/// `nfds` from the front (they always arrive no later than its header).
class frame_reader {
 public:
  frame_reader(int fd, long spin_ns) : m_fd(fd), m_spin_ns(spin_ns), m_buffer(k_chunk) {}

  /// Blocks until a whole frame is buffered; false on EOF or error.
  bool next(frame_header& header, const char*& payload) {
    if (!fill(sizeof(header))) {
      return false;
    }
    std::memcpy(&header, m_buffer.data() + m_begin, sizeof(header));
    if (header.magic != k_frame_magic || header.size > k_max_frame) {
      ::_exit(k_exit_bad_frame);
    }
    if (!fill(sizeof(header) + static_cast<std::size_t>(header.size))) {
      return false;
    }
    payload = m_buffer.data() + m_begin + sizeof(header);
    m_begin += sizeof(header) + static_cast<std::size_t>(header.size);
    return true;
  }

  /// Moves the next `count` queued descriptors into `out`; false if fewer arrived.
  bool take_fds(std::size_t count, std::vector<unique_fd>& out) {
    out.clear();
    if (m_fds.size() - m_next_fd < count) {
      return false;
    }
    for (std::size_t i = 0; i < count; ++i) {
      out.push_back(std::move(m_fds[m_next_fd++]));
    }
    if (m_next_fd == m_fds.size()) {
      m_fds.clear();
      m_next_fd = 0;
    }
    return true;
  }

 private:
  static constexpr std::size_t k_chunk = 64 * 1024;

  /// Makes at least `want` unread bytes available (blocking).
  bool fill(std::size_t want) {
    while (m_end - m_begin < want) {
      if (m_begin == m_end) {
        m_begin = m_end = 0;
        if (m_buffer.size() > 4 * k_chunk && want <= k_chunk) {
          m_buffer.resize(k_chunk);
          m_buffer.shrink_to_fit();
        }
      }
      if (m_buffer.size() - m_begin < want || m_end == m_buffer.size()) {
        // Not enough room after the unread bytes: move them to the front, grow if needed.
        std::memmove(m_buffer.data(), m_buffer.data() + m_begin, m_end - m_begin);
        m_end -= m_begin;
        m_begin = 0;
        if (m_buffer.size() < want) {
          m_buffer.resize(want);
        }
      }
      const auto n = receive(m_buffer.data() + m_end, m_buffer.size() - m_end);
      if (n <= 0) {
        return false;
      }
      m_end += static_cast<std::size_t>(n);
    }
    return true;
  }

  /// One read: what has arrived, else (after looking for `m_spin_ns`) a
  /// blocking wait for the next bytes.
  long receive(char* out, std::size_t capacity) {
    if (m_spin_ns > 0) {
      const auto until = now_ns() + m_spin_ns;
      for (;;) {
        const auto n = receive_some(m_fd, out, capacity, m_fds, false);
        if (n != -1) {
          return n;
        }
        if (now_ns() >= until) {
          break;
        }
        ::sched_yield();
      }
    }
    return receive_some(m_fd, out, capacity, m_fds, true);
  }

  static long now_ns() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1'000'000'000L + ts.tv_nsec;
  }

  int m_fd;
  long m_spin_ns;
  std::vector<char> m_buffer;
  std::size_t m_begin = 0;
  std::size_t m_end = 0;
  std::vector<unique_fd> m_fds;
  std::size_t m_next_fd = 0;
};

void send_error(int fd, frame_kind kind, std::uint64_t id, const exception_text& what, std::int64_t run_begin = 0,
                std::int64_t run_end = 0) {
  out_message out;
  out.shm_threshold = ~std::size_t{0};
  out.put_blob(what.type.data(), what.type.size());
  out.put_blob(what.message.data(), what.message.size());
  if (!send_frame(fd, kind, id, g_worker_pid, out.bytes, out.fds, run_begin, run_end)) {
    ::_exit(k_exit_parent_gone);
  }
}
} // namespace

int worker_channel() noexcept { return g_worker_channel; }

void keep_worker_heap(bool keep) noexcept {
  if (keep) {
    ::mallopt(M_MMAP_MAX, 0);
    ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
  } else {
    ::mallopt(M_MMAP_MAX, 65536);           // glibc's DEFAULT_MMAP_MAX
    ::mallopt(M_TRIM_THRESHOLD, 128 << 10); // glibc's DEFAULT_TRIM_THRESHOLD
    ::malloc_trim(0);
  }
}

code_naming worker_code_naming() noexcept { return g_code_naming; }
void set_worker_code_naming(code_naming naming) noexcept { g_code_naming = naming; }

void worker_main(int fd, const zygote_config& config) {
  g_worker_channel = fd;
  g_code_naming = config.naming;
  g_worker_pid = static_cast<std::uint64_t>(::getpid());
  if (config.keep_worker_heap) {
    keep_worker_heap(true);
  }
  if (config.initializer != nullptr) {
    try {
      config.initializer();
    } catch (...) {
      send_error(fd, frame_kind::init_error, 0, describe_exception(std::current_exception()));
      ::_exit(k_exit_init_failed);
    }
  }
  frame_reader reader(fd, config.worker_spin_ns);
  std::vector<unique_fd> fds;
  for (;;) {
    frame_header header;
    const char* payload = nullptr;
    if (!reader.next(header, payload)) {
      ::_exit(k_exit_parent_gone);
    }
    if (header.kind == static_cast<std::uint16_t>(frame_kind::retire)) {
      ::_exit(0);
    }
    if (header.kind != static_cast<std::uint16_t>(frame_kind::task)) {
      ::_exit(k_exit_bad_frame);
    }
    if (!reader.take_fds(header.nfds, fds)) {
      ::_exit(k_exit_bad_frame);
    }
    in_message in{payload, static_cast<std::size_t>(header.size), 0, &fds, 0};
    out_message out;
    out.shm_threshold = config.shm_threshold;
    bool ok = true;
    exception_text failure;
    const auto run_begin = trace_now(); // sent back with the answer, for simul::trace
    try {
      code_named<trampoline_fn>(header.fn, g_code_naming)(in, out);
      if (out.fds.size() > k_max_fds) {
        throw serialization_error("process_pool: a result may carry at most " + std::to_string(k_max_fds) +
                                  " shared-memory payloads (this one has " + std::to_string(out.fds.size()) +
                                  "); return fewer shared_buffers, or raise shm_threshold");
      }
    } catch (...) {
      ok = false;
      failure = describe_exception(std::current_exception());
    }
    const auto run_end = trace_now();
    if (ok) {
      if (!send_frame(fd, frame_kind::result, header.id, g_worker_pid, out.bytes, out.fds, run_begin, run_end)) {
        ::_exit(k_exit_parent_gone);
      }
    } else {
      send_error(fd, frame_kind::error, header.id, failure, run_begin, run_end);
    }
  }
}

namespace {
struct child {
  std::uint64_t worker;
  pid_t pid;
};

void reap(int control_fd, std::vector<child>& children, bool report) {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      return;
    }
    for (auto it = children.begin(); it != children.end(); ++it) {
      if (it->pid == pid) {
        if (report) {
          control_msg msg;
          msg.kind = control_kind::exited;
          msg.pid = pid;
          msg.value = status;
          msg.worker = it->worker;
          send_control(control_fd, msg);
        }
        children.erase(it);
        break;
      }
    }
  }
}

[[noreturn]] void finish(int control_fd, std::vector<child>& children) {
  for (const auto& c : children) {
    ::kill(c.pid, SIGKILL);
  }
  while (!children.empty()) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0 && errno == ECHILD) {
      break;
    }
    for (auto it = children.begin(); it != children.end(); ++it) {
      if (it->pid == pid) {
        children.erase(it);
        break;
      }
    }
  }
  ::close(control_fd);
  ::_exit(0);
}
} // namespace

void zygote_main(int control_fd, const zygote_config& config) {
  // Ctrl-C is the parent's decision: neither the zygote nor a worker dies of it.
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  // A program that ignores SIGCHLD passes that on through fork and exec; the
  // kernel would then reap the workers itself and the zygote could never
  // report a death.
  ::signal(SIGCHLD, SIG_DFL);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigset_t previous;
  ::sigprocmask(SIG_BLOCK, &chld, &previous);
  const int sig_fd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sig_fd < 0) {
    ::_exit(71);
  }
  const pid_t self = ::getpid();
  std::vector<child> children;

  for (;;) {
    pollfd watch[2] = {{control_fd, POLLIN, 0}, {sig_fd, POLLIN, 0}};
    if (::poll(watch, 2, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      finish(control_fd, children);
    }
    if ((watch[1].revents & POLLIN) != 0) {
      signalfd_siginfo info;
      while (::read(sig_fd, &info, sizeof(info)) > 0) {
      }
      reap(control_fd, children, true);
    }
    if (watch[0].revents == 0) {
      continue;
    }
    control_msg msg;
    unique_fd attached;
    const int got = receive_control(control_fd, msg, attached, false);
    if (got == -1) {
      continue;
    }
    if (got <= 0) {
      finish(control_fd, children); // the parent closed the pool or died
    }
    if (msg.kind == control_kind::spawn) {
      if (!attached) {
        continue;
      }
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::close(control_fd);
        ::close(sig_fd);
        ::sigprocmask(SIG_SETMASK, &previous, nullptr);
        // The worker dies with the zygote; and if the zygote is already gone
        // (the race PR_SET_PDEATHSIG cannot see), it leaves at once.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != self) {
          ::_exit(k_exit_parent_gone);
        }
        worker_main(attached.release(), config);
      }
      control_msg reply;
      reply.worker = msg.worker;
      if (pid < 0) {
        reply.kind = control_kind::spawn_failed;
        reply.value = errno;
      } else {
        reply.kind = control_kind::spawned;
        reply.pid = pid;
        children.push_back({msg.worker, pid});
      }
      send_control(control_fd, reply);
    } else if (msg.kind == control_kind::kill) {
      for (const auto& c : children) {
        if (c.worker == msg.worker) {
          ::kill(c.pid, msg.value);
        }
      }
    }
  }
}

} // namespace simul::detail
