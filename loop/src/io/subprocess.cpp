// Child processes: uv_spawn with pipes that are ordinary streams.

#include "io/stream_state.hpp"

#include <simul/loop/subprocess.hpp>
#include <simul/loop/task_handle.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <memory>
#include <thread>

namespace simul::detail {

class process_state {
 public:
  process_state(event_loop& loop, std::string program) : m_loop(&loop), m_program(std::move(program)) {
    m_box->owner = this;
  }
  process_state(const process_state&) = delete;
  process_state& operator=(const process_state&) = delete;

  int spawn(uv_process_options_t& options) {
    options.exit_cb = &on_exit;
    const int rc = uv_spawn(uv_loop(*m_loop), &m_box->process, &options);
    if (rc < 0) {
      // libuv wants the handle closed even when the spawn failed.
      m_close_started = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&m_box->process), &on_close);
      return rc;
    }
    m_pid = m_box->process.pid;
    return 0;
  }

  [[nodiscard]] int pid() const noexcept { return m_pid; }
  [[nodiscard]] const std::optional<int>& returncode() const noexcept { return m_returncode; }
  [[nodiscard]] const std::string& program() const noexcept { return m_program; }
  io_wait_list& exit_waiters() noexcept { return m_exit_waiters; }

  void send_signal(int sig) const {
    if (m_returncode || m_box == nullptr || m_close_started) {
      return; // exited: nothing to signal (the pid may belong to someone else now)
    }
    if (const int rc = uv_process_kill(&m_box->process, sig); rc < 0 && rc != UV_ESRCH) {
      throw_io_error(rc, "send signal " + std::to_string(sig) + " to",
                     m_program + " (pid " + std::to_string(m_pid) + ")");
    }
  }

  void acquire() noexcept { ++m_users; }
  void release() noexcept {
    if (--m_users > 0) {
      return;
    }
    if (m_box == nullptr) {
      delete this;
    }
    // Otherwise the handle is open or closing: its close callback frees us
    // (after the child's exit, or when the loop closes).
  }

  /// The loop is closing with the child still running: close the handle the
  /// usual way, so that the close callback frees what nobody holds.
  static void close_at_loop_close(uv_process_t* h) noexcept {
    auto* self = reinterpret_cast<box*>(h)->owner;
    self->m_close_started = true;
    uv_close(reinterpret_cast<uv_handle_t*>(h), &on_close);
  }

 private:
  struct box {
    uv_process_t process{}; // first
    process_state* owner = nullptr;
  };
  ~process_state() = default;

  static void on_exit(uv_process_t* h, int64_t exit_status, int term_signal) {
    auto* self = reinterpret_cast<box*>(h)->owner;
    self->m_returncode = term_signal != 0 ? -term_signal : static_cast<int>(exit_status);
    self->m_exit_waiters.notify_all();
    if (!self->m_close_started) {
      self->m_close_started = true;
      uv_close(reinterpret_cast<uv_handle_t*>(h), &on_close);
    }
  }
  static void on_close(uv_handle_t* h) {
    auto* b = reinterpret_cast<box*>(h);
    auto* self = b->owner;
    delete b;
    self->m_box = nullptr;
    self->m_exit_waiters.notify_all();
    if (self->m_users == 0) {
      delete self;
    }
  }

  event_loop* m_loop;
  std::string m_program;
  box* m_box = new box();
  int m_pid = 0;
  std::optional<int> m_returncode;
  unsigned m_users = 0;
  bool m_close_started = false;
  io_wait_list m_exit_waiters;
};

void process_acquire(process_state* s) noexcept { s->acquire(); }
void process_release(process_state* s) noexcept { s->release(); }

void close_process_at_loop_close(uv_handle_t* h) noexcept {
  const auto pid = static_cast<pid_t>(reinterpret_cast<const uv_process_t*>(h)->pid);
  process_state::close_at_loop_close(reinterpret_cast<uv_process_t*>(h));
  if (pid <= 0) {
    return;
  }
  try {
    std::thread([pid] {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }).detach();
  } catch (...) {
    // No thread to spare: the child stays a zombie until this process exits.
  }
}

namespace {

class exit_awaiter final : public io_waiter {
 public:
  exit_awaiter(process p, process_state& s) : m_keep(std::move(p)), m_state(s) {}
  bool await_ready() const noexcept { return m_state.returncode().has_value(); }
  bool await_suspend(std::coroutine_handle<> h) { return park(m_state.exit_waiters(), h); }
  int await_resume() {
    if (m_task != nullptr) {
      check_cancel();
    }
    if (!m_state.returncode()) {
      throw error("process " + m_state.program() + ": the loop stopped watching it before it exited");
    }
    return *m_state.returncode();
  }

 private:
  process m_keep;
  process_state& m_state;
};

task<int> wait_impl(process p, process_state* s) { co_return co_await exit_awaiter(std::move(p), *s); }

task<std::string> read_to_end(stream_reader r) { co_return co_await r.read(); }

task<void> feed(stream_writer w, std::string input) {
  try {
    if (!input.empty()) {
      w.write(input);
      co_await w.drain();
    }
  } catch (const connection_error&) {
    // The child exited or closed its stdin without reading it all: as
    // asyncio's communicate, this is not an error.
  }
  w.close();
}

/// Cancels a helper task if the frame that started it unwinds first.
template <class T>
struct cancel_on_exit {
  task_handle<T>& handle;
  ~cancel_on_exit() {
    if (handle.valid() && !handle.done()) {
      handle.cancel();
    }
  }
};

task<communicate_result> communicate_impl(process p, std::string input) {
  task_handle<std::string> err_task;
  task_handle<void> in_task;
  cancel_on_exit<std::string> stop_err{err_task};
  cancel_on_exit<void> stop_in{in_task};
  if (p.stderr_) {
    err_task = create_task(read_to_end(p.stderr_));
  }
  if (p.stdin_) {
    in_task = create_task(feed(p.stdin_, std::move(input)));
  }
  communicate_result result;
  if (p.stdout_) {
    result.stdout_ = co_await p.stdout_.read();
  }
  if (err_task.valid()) {
    result.stderr_ = co_await err_task;
  }
  if (in_task.valid()) {
    co_await in_task;
  }
  co_await p.wait();
  co_return result;
}

} // namespace
} // namespace simul::detail

namespace simul {

using detail::process_state;
using detail::stream_ref;
using detail::stream_state;

process::process(detail::process_state* s) noexcept : m_state(s) {
  if (s != nullptr) {
    s->acquire();
  }
}
process::process(const process& o) noexcept
    : stdin_(o.stdin_), stdout_(o.stdout_), stderr_(o.stderr_), m_state(o.m_state) {
  if (m_state != nullptr) {
    m_state->acquire();
  }
}
process::process(process&& o) noexcept
    : stdin_(std::move(o.stdin_)), stdout_(std::move(o.stdout_)), stderr_(std::move(o.stderr_)),
      m_state(std::exchange(o.m_state, nullptr)) {}
process& process::operator=(process o) noexcept {
  std::swap(stdin_, o.stdin_);
  std::swap(stdout_, o.stdout_);
  std::swap(stderr_, o.stderr_);
  std::swap(m_state, o.m_state);
  return *this;
}
process::~process() {
  if (m_state != nullptr) {
    m_state->release();
  }
}

detail::process_state& process::state() const {
  if (m_state == nullptr) {
    throw error("process: the process object is empty");
  }
  return *m_state;
}

int process::pid() const { return state().pid(); }
std::optional<int> process::returncode() const { return state().returncode(); }
task<int> process::wait() const { return detail::wait_impl(*this, &state()); }
task<communicate_result> process::communicate(std::string input) const {
  (void)state();
  return detail::communicate_impl(*this, std::move(input));
}
void process::send_signal(int sig) const { state().send_signal(sig); }
void process::terminate() const { send_signal(SIGTERM); }
void process::kill() const { send_signal(SIGKILL); }

namespace detail {

// Not a coroutine: g++ 12 mishandles local arrays in coroutine frames.
process spawn_process(event_loop& loop, std::string& program, std::vector<std::string>& args,
                      subprocess_options& options) {
  ignore_sigpipe_once();
  if (program.empty()) {
    throw error("create_subprocess_exec: the program is empty");
  }
  std::vector<char*> argv;
  argv.push_back(program.data());
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  std::vector<char*> envp;
  if (options.env) {
    for (const auto& [k, v] : *options.env) {
      env_strings.push_back(k + "=" + v);
    }
    for (auto& e : env_strings) {
      envp.push_back(e.data());
    }
    envp.push_back(nullptr);
  }

  const stdio modes[3] = {options.stdin_, options.stdout_, options.stderr_};
  if (options.stdin_ == stdio::to_stdout || options.stdout_ == stdio::to_stdout) {
    throw error("create_subprocess: stdio::to_stdout is for stderr only");
  }
  // Descriptors past the three standard ones: the child's fd i is our fd i
  // for each i in pass_fds (libuv clears close-on-exec in the child), and
  // left alone for the others.
  int highest = 2;
  for (const int fd : options.pass_fds) {
    if (fd >= 0 && fd <= 2) {
      throw error("create_subprocess: pass_fds: fd " + std::to_string(fd) +
                  " is a standard stream; stdin_, stdout_ and stderr_ say where those go");
    }
    if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) {
      throw_descriptor_error(EBADF, "create_subprocess: pass_fds", fd, "is not open");
    }
    highest = std::max(highest, fd);
  }
  std::vector<uv_stdio_container_t> containers(static_cast<std::size_t>(highest) + 1);
  for (const int fd : options.pass_fds) {
    containers[static_cast<std::size_t>(fd)].flags = UV_INHERIT_FD;
    containers[static_cast<std::size_t>(fd)].data.fd = fd;
  }
  const char* names[3] = {" stdin", " stdout", " stderr"};
  stream_ref pipes[3];
  // stdout piped with stderr joined to it: one pipe of our own, its write end
  // given to the child as both fd 1 and fd 2 (libuv's own pipes are one per fd).
  const bool merged_pipe = options.stdout_ == stdio::pipe && options.stderr_ == stdio::to_stdout;
  uv_file merged[2] = {-1, -1};
  struct close_write_end {
    uv_file* fd;
    ~close_write_end() {
      if (*fd >= 0) {
        ::close(*fd);
      }
    }
  } merged_guard{&merged[1]};
  if (merged_pipe) {
    if (const int rc = uv_pipe(merged, UV_NONBLOCK_PIPE, 0); rc < 0) {
      throw_io_error(rc, "make a pipe for", program + " stdout");
    }
    pipes[1] = stream_ref(new stream_state(loop, stream_state::kind::pipe, options.limit));
    pipes[1].get()->set_peer(program + " stdout");
    if (const int rc = uv_pipe_open(reinterpret_cast<uv_pipe_t*>(pipes[1].get()->stream()), merged[0]); rc < 0) {
      ::close(merged[0]);
      throw_io_error(rc, "open the pipe for", program + " stdout");
    }
  }
  for (int i = 0; i < 3; ++i) {
    if (merged_pipe && i > 0) {
      containers[i].flags = UV_INHERIT_FD;
      containers[i].data.fd = merged[1];
      continue;
    }
    switch (modes[i]) {
    case stdio::inherit:
      containers[i].flags = UV_INHERIT_FD;
      containers[i].data.fd = i;
      break;
    case stdio::devnull:
      containers[i].flags = UV_IGNORE; // libuv opens /dev/null for 0-2
      break;
    case stdio::to_stdout: // stderr, stdout not piped: the child's fd 1 as it is
      if (options.stdout_ == stdio::devnull) {
        containers[i].flags = UV_IGNORE;
      } else {
        containers[i].flags = UV_INHERIT_FD;
        containers[i].data.fd = 1;
      }
      break;
    case stdio::pipe:
      pipes[i] = stream_ref(new stream_state(loop, stream_state::kind::pipe, options.limit));
      pipes[i].get()->set_peer(program + names[i]);
      containers[i].flags =
          static_cast<uv_stdio_flags>(UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE));
      containers[i].data.stream = pipes[i].get()->stream();
      break;
    }
  }

  uv_process_options_t o{};
  o.file = program.c_str();
  o.args = argv.data();
  o.env = options.env ? envp.data() : nullptr;
  o.cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  o.stdio_count = static_cast<int>(containers.size());
  o.stdio = containers.data();
  o.flags = options.start_new_session ? UV_PROCESS_DETACHED : 0; // libuv's detached child calls setsid()

  process p(new process_state(loop, program));
  if (const int rc = p.state().spawn(o); rc < 0) {
    throw_io_error(rc, "spawn", program);
  }
  if (pipes[0]) {
    p.stdin_ = stream_writer(pipes[0]);
  }
  if (pipes[1]) {
    pipes[1].get()->on_connected();
    p.stdout_ = stream_reader(pipes[1]);
  }
  if (pipes[2]) {
    pipes[2].get()->on_connected();
    p.stderr_ = stream_reader(pipes[2]);
  }
  return p;
}

} // namespace detail

task<process> create_subprocess_exec(std::string program, std::vector<std::string> args, subprocess_options options) {
  auto& loop = detail::running_loop_checked("create_subprocess_exec");
  co_return detail::spawn_process(loop, program, args, options);
}

task<process> create_subprocess_exec(std::string program, std::vector<std::string> args) {
  return create_subprocess_exec(std::move(program), std::move(args), subprocess_options());
}

task<process> create_subprocess_exec(std::string program) {
  return create_subprocess_exec(std::move(program), std::vector<std::string>(), subprocess_options());
}

task<process> create_subprocess_shell(std::string command, subprocess_options options) {
  auto& loop = detail::running_loop_checked("create_subprocess_shell");
  if (command.empty()) {
    throw error("create_subprocess_shell: the command is empty");
  }
  std::string shell = "/bin/sh";
  std::vector<std::string> args{"-c", std::move(command)};
  co_return detail::spawn_process(loop, shell, args, options);
}

task<process> create_subprocess_shell(std::string command) {
  return create_subprocess_shell(std::move(command), subprocess_options());
}

} // namespace simul
