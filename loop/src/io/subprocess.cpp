// Child processes: posix_spawn watched through a pidfd (spawn.hpp), or
// libuv's uv_spawn where the kernel has no pidfds; either way with pipes that
// are ordinary streams.

#include "io/process_state.hpp"
#include "io/spawn.hpp"
#include "io/stream_state.hpp"

#include <simul/loop/io/subprocess.hpp>
#include <simul/loop/task_handle.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <thread>

namespace simul::detail {

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

/// What the spawn reads, kept until it has run: the arguments, the
/// environment, where the child's standard descriptors come from and the
/// pipes made for it.
struct spawn_plan {
  std::vector<char*> argv;
  std::vector<std::string> env_strings;
  std::vector<char*> envp;
  stream_ref pipes[3];
  int stdio[3] = {0, 1, 2};    // our descriptor for each of the child's 0–2, or k_child_*
  std::vector<int> child_ends; // the pipes' ends the child gets: ours to close once it has them

  spawn_plan() = default;
  spawn_plan(const spawn_plan&) = delete;
  spawn_plan& operator=(const spawn_plan&) = delete;
  ~spawn_plan() {
    for (const int fd : child_ends) {
      ::close(fd);
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

/// Throws for options that cannot work, before anything is made: stdin or
/// stdout joined "to stdout", a standard or closed descriptor in pass_fds.
void check_options(const subprocess_options& options) {
  if (options.stdin_ == stdio::to_stdout || options.stdout_ == stdio::to_stdout) {
    throw error("create_subprocess: stdio::to_stdout is for stderr only");
  }
  for (const int fd : options.pass_fds) {
    if (fd >= 0 && fd <= 2) {
      throw error("create_subprocess: pass_fds: fd " + std::to_string(fd) +
                  " is a standard stream; stdin_, stdout_ and stderr_ say where those go");
    }
    if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) {
      throw_descriptor_error(EBADF, "create_subprocess: pass_fds", fd, "is not open");
    }
  }
}

/// The PATH the child will search: from its environment if the options give one.
const char* child_search_path(const subprocess_options& options) {
  if (!options.env) {
    return std::getenv("PATH");
  }
  const auto it = options.env->find("PATH");
  return it == options.env->end() ? nullptr : it->second.c_str();
}

/// A pipe stream of the loop, named for messages.
stream_ref new_pipe(event_loop& loop, std::string name, std::size_t limit) {
  stream_ref ref(new stream_state(loop, stream_state::kind::pipe, limit));
  ref.get()->set_peer(std::move(name));
  return ref;
}

/// Moves `fd` above 2 if it is one of 0–2 (possible when this process runs
/// with its own closed): the child's 0–2 are set from ours by number.
int above_stdio(int fd) noexcept {
  if (fd > 2) {
    return fd;
  }
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  ::close(fd);
  return moved;
}

/// The child's standard descriptor `i` piped to us: a pipe for stdout and
/// stderr, a socket pair for stdin (so that write_eof() can half-close it).
/// Our end becomes the stream `plan.pipes[i]`, the other is the child's.
void open_pipe(spawn_plan& plan, int i, event_loop& loop, const std::string& program, std::size_t limit) {
  static constexpr const char* names[3] = {" stdin", " stdout", " stderr"};
  int fds[2] = {-1, -1};
  const int rc = i == 0 ? ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) : ::pipe2(fds, O_CLOEXEC);
  if (rc < 0) {
    throw_io_error(-errno, "make a pipe for", program + names[i]);
  }
  const int ours = above_stdio(fds[0]);
  const int theirs = above_stdio(fds[1]);
  if (theirs >= 0) {
    plan.child_ends.push_back(theirs);
  }
  if (ours < 0 || theirs < 0) {
    if (ours >= 0) {
      ::close(ours);
    }
    throw_io_error(-EMFILE, "make a pipe for", program + names[i]);
  }
  plan.stdio[i] = theirs;
  plan.pipes[i] = new_pipe(loop, program + names[i], limit);
  if (const int open_rc = uv_pipe_open(reinterpret_cast<uv_pipe_t*>(plan.pipes[i].get()->stream()), ours);
      open_rc < 0) {
    ::close(ours);
    throw_io_error(open_rc, "open the pipe for", program + names[i]);
  }
}

/// Where the child's stdin, stdout and stderr come from; makes the pipes.
void set_stdio(spawn_plan& plan, event_loop& loop, const std::string& program, const subprocess_options& options) {
  const stdio modes[3] = {options.stdin_, options.stdout_, options.stderr_};
  for (int i = 0; i < 3; ++i) {
    switch (modes[i]) {
    case stdio::inherit:
      plan.stdio[i] = i;
      break;
    case stdio::devnull:
      plan.stdio[i] = k_child_devnull;
      break;
    case stdio::to_stdout: // stderr only (check_options): wherever the child's stdout goes
      plan.stdio[i] = k_child_stdout;
      break;
    case stdio::pipe:
      open_pipe(plan, i, loop, program, options.limit);
      break;
    }
  }
}

/// libuv's spawn: the plan as libuv's descriptor containers.
void start_with_uv_spawn(process& p, spawn_plan& plan, const std::string& program, const subprocess_options& options) {
  int highest = 2;
  for (const int fd : options.pass_fds) {
    highest = std::max(highest, fd);
  }
  std::vector<uv_stdio_container_t> containers(static_cast<std::size_t>(highest) + 1);
  for (int i = 0; i < 3; ++i) {
    const int from = plan.stdio[i] == k_child_stdout ? plan.stdio[1] : plan.stdio[i];
    auto& c = containers[static_cast<std::size_t>(i)];
    if (from == k_child_devnull) {
      c.flags = UV_IGNORE; // libuv opens /dev/null for 0–2
    } else {
      c.flags = UV_INHERIT_FD;
      c.data.fd = from;
    }
  }
  // The child's fd i is our fd i for each i in pass_fds (libuv clears
  // close-on-exec in the child); the others above 2 are left alone.
  for (const int fd : options.pass_fds) {
    containers[static_cast<std::size_t>(fd)].flags = UV_INHERIT_FD;
    containers[static_cast<std::size_t>(fd)].data.fd = fd;
  }
  uv_process_options_t o{};
  o.file = program.c_str();
  o.args = plan.argv.data();
  o.env = options.env ? plan.envp.data() : nullptr;
  o.cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  o.stdio_count = static_cast<int>(containers.size());
  o.stdio = containers.data();
  o.flags = options.start_new_session ? UV_PROCESS_DETACHED : 0; // libuv's detached child calls setsid()
  if (const int rc = p.state().spawn(o); rc < 0) {
    throw_spawn_error(-rc, program, o.cwd);
  }
}

/// posix_spawn, with the program looked up in the child's PATH first.
void start_with_posix_spawn(process& p, spawn_plan& plan, const std::string& path, const subprocess_options& options) {
  child_setup setup;
  setup.path = path.c_str();
  setup.argv = plan.argv.data();
  setup.envp = options.env ? plan.envp.data() : nullptr;
  setup.cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  std::copy(std::begin(plan.stdio), std::end(plan.stdio), std::begin(setup.stdio));
  setup.pass_fds = &options.pass_fds;
  setup.new_session = options.start_new_session;
  p.state().spawn(setup);
}

/// Gives the started child's process its ends of the pipes.
void hand_out_pipes(process& p, spawn_plan& plan) {
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
}

} // namespace

// Not a coroutine: g++ 12 mishandles local arrays in coroutine frames.
process spawn_process(event_loop& loop, std::string& program, std::vector<std::string>& args,
                      subprocess_options& options) {
  ignore_sigpipe_once();
  if (program.empty()) {
    throw error("create_subprocess_exec: the program is empty");
  }
  check_options(options);
  const bool fast = posix_spawn_enabled();
  // Looked up first: a missing program costs no pipes.
  const std::string path =
      fast ? find_program(program, child_search_path(options), options.cwd.empty() ? nullptr : options.cwd.c_str())
           : std::string();
  spawn_plan plan;
  set_arguments(plan, program, args, options);
  set_stdio(plan, loop, program, options);
  process p(new process_state(loop, program));
  if (fast) {
    start_with_posix_spawn(p, plan, path, options);
  } else {
    start_with_uv_spawn(p, plan, program, options);
  }
  hand_out_pipes(p, plan);
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
