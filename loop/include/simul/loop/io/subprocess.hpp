#pragma once

// Child processes with pipes (asyncio's create_subprocess_exec and
// create_subprocess_shell).
//
//   const std::vector<std::string> args{"-r"};
//   simul::subprocess_options opts{.stdin_ = simul::stdio::pipe, .stdout_ = simul::stdio::pipe};
//   auto p = co_await simul::create_subprocess_exec("sort", args, opts);
//   auto [out, err] = co_await p.communicate("b\na\n");   // out == "b\na\n"
//   int status = co_await p.wait();                        // 0
//
// The program is looked up in PATH (the child's: `env`'s if given) when it
// has no slash. The child starts with every signal at its default action
// and none blocked. Each of the child's
// stdin/stdout/stderr is a pipe to us (`stdin_` is then a stream_writer,
// `stdout_` / `stderr_` stream_readers, see stream.hpp), inherited from this
// process, or /dev/null; `stderr_ = stdio::to_stdout` sends the child's stderr
// wherever its stdout goes (into the `stdout_` reader, interleaved, when
// stdout is piped). `cwd` and `env` (the whole environment; unset means
// inherit ours) apply to the child; `pass_fds` hands it more descriptors,
// `start_new_session` puts it in a session of its own.
//
// `wait()` gives the exit status: the exit code, or minus the signal number
// when a signal ended the child (Python's returncode). `communicate(input)`
// writes `input` to stdin and closes it, reads stdout and stderr to their
// ends at the same time (so neither pipe can fill up and block the child),
// then waits for the exit. `send_signal`, `terminate` (SIGTERM) and `kill`
// (SIGKILL) do nothing once the child has exited.
//
// Errors: a program that does not exist or cannot run throws `io_error`
// naming it ("spawn no-such-program: no such file or directory (ENOENT)"),
// a `cwd` that cannot be entered throws `io_error` naming the directory;
// nothing is left behind (no descriptor, no zombie);
// a `pass_fds` entry that is not open throws `io_error` (EBADF) naming it, one
// of 0–2 throws `simul::error`, both before anything is started.
//
// `create_subprocess_shell(cmd)` runs `cmd` through `/bin/sh -c`, with the
// shell's quoting, redirections and expansions: never pass it untrusted text.
//
// Thread-safety: loop thread only. Lifetime: copies of a `process` share one
// child; when the last copy goes before the child exits, the loop still reaps
// it (no zombie) while it runs. A child still running when its loop closes is
// left running (as asyncio leaves it) and reaped by a background thread when
// it exits, so it never stays a zombie; debug mode reports it. Nothing may
// outlive the loop.

#include <simul/loop/detail/counted_ref.hpp>
#include <simul/loop/io/io_error.hpp>
#include <simul/loop/io/stream.hpp>
#include <simul/loop/task.hpp>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace simul {

/// Where a child's standard stream goes.
enum class stdio {
  inherit,   ///< the same as this process's
  pipe,      ///< a pipe to this process
  devnull,   ///< /dev/null
  to_stdout, ///< stderr only: wherever stdout goes (asyncio.subprocess.STDOUT)
};

/// Options of `create_subprocess_exec`.
struct subprocess_options {
  stdio stdin_ = stdio::inherit;
  stdio stdout_ = stdio::inherit;
  stdio stderr_ = stdio::inherit;
  std::string cwd{};                                       ///< empty: ours
  std::optional<std::map<std::string, std::string>> env{}; ///< unset: ours
  std::size_t limit = 64 * 1024;                           ///< the readers' limit
  /// Descriptors the child gets under the same numbers (Popen's pass_fds),
  /// even if they are close-on-exec here; every other descriptor that is
  /// close-on-exec stays out of the child. Each must be open and above 2
  /// (0–2 are `stdin_`, `stdout_`, `stderr_`).
  std::vector<int> pass_fds{};
  /// The child calls setsid(): a new session and process group of its own,
  /// so a signal to this process's group (Ctrl-C in a terminal) does not
  /// reach it (Popen's start_new_session).
  bool start_new_session = false;
};

/// What `communicate` gives: all of stdout and stderr ("" if not piped).
struct communicate_result {
  std::string stdout_;
  std::string stderr_;
};

namespace detail {
class process_state;
} // namespace detail

/// A child process (asyncio.subprocess.Process). See the file comment.
///
/// Thread-safety: loop thread only. Lifetime: copies share the child.
class process {
 public:
  process() noexcept = default;
  explicit process(detail::process_state* s) noexcept : m_state(s) {} // internal: shares `s`

  /// The child's process id.
  [[nodiscard]] int pid() const;
  /// The exit status once the child has exited (see the file comment).
  [[nodiscard]] std::optional<int> returncode() const;
  /// Suspends until the child exits; gives its exit status.
  [[nodiscard]] task<int> wait() const;
  /// Feeds `input` to stdin (if piped) and closes it, reads stdout and
  /// stderr (if piped) to their ends, waits for the exit.
  [[nodiscard]] task<communicate_result> communicate(std::string input = {}) const;
  /// Sends signal `sig` unless the child has exited. Throws `io_error`.
  void send_signal(int sig) const;
  /// SIGTERM.
  void terminate() const;
  /// SIGKILL.
  void kill() const;
  /// The process's internals (for simul's own sources).
  [[nodiscard]] detail::process_state& state() const;

  stream_writer stdin_;  ///< the pipe to the child's stdin (empty unless piped)
  stream_reader stdout_; ///< the pipe from the child's stdout (empty unless piped)
  stream_reader stderr_; ///< the pipe from the child's stderr (empty unless piped)

 private:
  detail::counted_ref<detail::process_state> m_state;
};

/// Starts `program` with `args` (not including the program's own name).
/// Throws `io_error` if it cannot be started.
///
/// With g++ 12, pass `options` as a named variable, not as a braced
/// temporary inside the `co_await` expression: that compiler destroys an
/// aggregate temporary with string members twice there (the overloads below
/// exist instead of default arguments for the same reason).
[[nodiscard]] task<process> create_subprocess_exec(std::string program, std::vector<std::string> args,
                                                   subprocess_options options);
/// Same, with the default options (every stream inherited).
[[nodiscard]] task<process> create_subprocess_exec(std::string program, std::vector<std::string> args);
/// Same, without arguments.
[[nodiscard]] task<process> create_subprocess_exec(std::string program);

/// Runs `command` with `/bin/sh -c` (see the file comment). Throws
/// `simul::error` for an empty command and `io_error` if the shell cannot be
/// started; a command the shell cannot find gives exit status 127.
[[nodiscard]] task<process> create_subprocess_shell(std::string command, subprocess_options options);
/// Same, with the default options (every stream inherited).
[[nodiscard]] task<process> create_subprocess_shell(std::string command);

} // namespace simul
