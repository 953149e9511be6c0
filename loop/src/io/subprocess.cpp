// Child processes: uv_spawn with pipes that are ordinary streams.

#include "io/counted_ref_impl.hpp"
#include "io/stream_state.hpp"

#include <simul/loop/io/subprocess.hpp>
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
  wait_list& exit_waiters() noexcept { return m_exit_waiters; }

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
    self->m_exit_waiters.signal_all();
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
    self->m_exit_waiters.signal_all();
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
  wait_list m_exit_waiters;
};

template class counted_ref<process_state>;

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

class exit_awaiter final : public parked_waiter {
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

detail::process_state& process::state() const {
  if (!m_state) {
    throw error("process: the process object is empty");
  }
  return *m_state.get();
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

namespace {

/// What libuv's spawn reads, kept until it has run: the arguments, the
/// environment, the child's descriptors and the pipes made for it.
struct spawn_plan {
  std::vector<char*> argv;
  std::vector<std::string> env_strings;
  std::vector<char*> envp;
  std::vector<uv_stdio_container_t> containers;
  stream_ref pipes[3];
  // stdout piped with stderr joined to it: one pipe of our own, its write end
  // given to the child as both fd 1 and fd 2 (libuv's own pipes are one per fd).
  uv_file merged[2] = {-1, -1};

  spawn_plan() = default;
  spawn_plan(const spawn_plan&) = delete;
  spawn_plan& operator=(const spawn_plan&) = delete;
  ~spawn_plan() {
    if (merged[1] >= 0) {
      ::close(merged[1]); // the child has its copy
    }
  }
};

/// argv (the program, then `args`) and, if the options give one, the environment.
void set_arguments(spawn_plan& plan, std::string& program, std::vector<std::string>& args,
                   const subprocess_options& options) {
  plan.argv.push_back(program.data());
  for (auto& a : args) {
    plan.argv.push_back(a.data());
  }
  plan.argv.push_back(nullptr);
  if (options.env) {
    for (const auto& [k, v] : *options.env) {
      plan.env_strings.push_back(k + "=" + v);
    }
    for (auto& e : plan.env_strings) {
      plan.envp.push_back(e.data());
    }
    plan.envp.push_back(nullptr);
  }
}

/// Descriptors past the three standard ones: the child's fd i is our fd i
/// for each i in pass_fds (libuv clears close-on-exec in the child), and
/// left alone for the others. Throws for a standard or closed descriptor.
void pass_descriptors(spawn_plan& plan, const subprocess_options& options) {
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
  plan.containers.resize(static_cast<std::size_t>(highest) + 1);
  for (const int fd : options.pass_fds) {
    plan.containers[static_cast<std::size_t>(fd)].flags = UV_INHERIT_FD;
    plan.containers[static_cast<std::size_t>(fd)].data.fd = fd;
  }
}

/// A pipe stream of the loop, named for messages.
stream_ref new_pipe(event_loop& loop, std::string name, std::size_t limit) {
  stream_ref ref(new stream_state(loop, stream_state::kind::pipe, limit));
  ref.get()->set_peer(std::move(name));
  return ref;
}

/// The pipe that carries the child's stdout and stderr both.
void open_merged_pipe(spawn_plan& plan, event_loop& loop, const std::string& program, std::size_t limit) {
  if (const int rc = uv_pipe(plan.merged, UV_NONBLOCK_PIPE, 0); rc < 0) {
    throw_io_error(rc, "make a pipe for", program + " stdout");
  }
  plan.pipes[1] = new_pipe(loop, program + " stdout", limit);
  if (const int rc = uv_pipe_open(reinterpret_cast<uv_pipe_t*>(plan.pipes[1].get()->stream()), plan.merged[0]);
      rc < 0) {
    ::close(plan.merged[0]);
    throw_io_error(rc, "open the pipe for", program + " stdout");
  }
}

/// Where the child's standard descriptor `i` goes, by its mode.
void set_standard(spawn_plan& plan, int i, stdio mode, event_loop& loop, const std::string& program,
                  const subprocess_options& options) {
  static constexpr const char* names[3] = {" stdin", " stdout", " stderr"};
  auto& c = plan.containers[static_cast<std::size_t>(i)];
  switch (mode) {
  case stdio::inherit:
    c.flags = UV_INHERIT_FD;
    c.data.fd = i;
    break;
  case stdio::devnull:
    c.flags = UV_IGNORE; // libuv opens /dev/null for 0-2
    break;
  case stdio::to_stdout: // stderr, stdout not piped: the child's fd 1 as it is
    if (options.stdout_ == stdio::devnull) {
      c.flags = UV_IGNORE;
    } else {
      c.flags = UV_INHERIT_FD;
      c.data.fd = 1;
    }
    break;
  case stdio::pipe:
    plan.pipes[i] = new_pipe(loop, program + names[i], options.limit);
    c.flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE));
    c.data.stream = plan.pipes[i].get()->stream();
    break;
  }
}

/// The child's stdin, stdout and stderr.
void set_stdio(spawn_plan& plan, event_loop& loop, const std::string& program, const subprocess_options& options) {
  if (options.stdin_ == stdio::to_stdout || options.stdout_ == stdio::to_stdout) {
    throw error("create_subprocess: stdio::to_stdout is for stderr only");
  }
  pass_descriptors(plan, options);
  const bool merged_pipe = options.stdout_ == stdio::pipe && options.stderr_ == stdio::to_stdout;
  if (merged_pipe) {
    open_merged_pipe(plan, loop, program, options.limit);
  }
  const stdio modes[3] = {options.stdin_, options.stdout_, options.stderr_};
  for (int i = 0; i < 3; ++i) {
    if (merged_pipe && i > 0) {
      plan.containers[static_cast<std::size_t>(i)].flags = UV_INHERIT_FD;
      plan.containers[static_cast<std::size_t>(i)].data.fd = plan.merged[1];
    } else {
      set_standard(plan, i, modes[i], loop, program, options);
    }
  }
}

/// Spawns the child the plan describes and gives it its pipes' other ends.
process start_child(spawn_plan& plan, event_loop& loop, const std::string& program, const subprocess_options& options) {
  uv_process_options_t o{};
  o.file = program.c_str();
  o.args = plan.argv.data();
  o.env = options.env ? plan.envp.data() : nullptr;
  o.cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  o.stdio_count = static_cast<int>(plan.containers.size());
  o.stdio = plan.containers.data();
  o.flags = options.start_new_session ? UV_PROCESS_DETACHED : 0; // libuv's detached child calls setsid()

  process p(new process_state(loop, program));
  if (const int rc = p.state().spawn(o); rc < 0) {
    throw_io_error(rc, "spawn", program);
  }
  if (plan.pipes[0]) {
    p.stdin_ = stream_writer(plan.pipes[0]);
  }
  if (plan.pipes[1]) {
    plan.pipes[1].get()->on_connected();
    p.stdout_ = stream_reader(plan.pipes[1]);
  }
  if (plan.pipes[2]) {
    plan.pipes[2].get()->on_connected();
    p.stderr_ = stream_reader(plan.pipes[2]);
  }
  return p;
}

} // namespace

// Not a coroutine: g++ 12 mishandles local arrays in coroutine frames.
process spawn_process(event_loop& loop, std::string& program, std::vector<std::string>& args,
                      subprocess_options& options) {
  ignore_sigpipe_once();
  if (program.empty()) {
    throw error("create_subprocess_exec: the program is empty");
  }
  spawn_plan plan;
  set_arguments(plan, program, args, options);
  set_stdio(plan, loop, program, options);
  return start_child(plan, loop, program, options);
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
