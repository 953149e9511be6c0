#pragma once

// The error types every simul module throws.
//
// All of them derive from `simul::error`, itself a `std::runtime_error`, so a
// caller can catch everything simul raises with one handler and still tell the
// cases apart. The names follow Python's `concurrent.futures` and `asyncio`
// (`CancelledError`, `TimeoutError`, `BrokenExecutor`), plus two errors that
// only a process pool can produce: a worker that died (`worker_crashed`) and an
// exception raised in another process (`remote_error`).
//
// Thread-safety: the types are plain values; a thrown error may be copied and
// rethrown on any thread.

#include <cxxabi.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <utility>

namespace simul {

/// The base of every error simul throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The operation was cancelled (asyncio.CancelledError, futures.CancelledError).
class cancelled_error : public error {
 public:
  explicit cancelled_error(const std::string& message = "operation was cancelled") : error(message) {}
};

/// A deadline passed before the operation completed.
class timeout_error : public error {
 public:
  explicit timeout_error(const std::string& message = "operation timed out") : error(message) {}
};

/// The executor can no longer run work: it was shut down, or it broke.
///
/// `cause()` holds the exception that broke it, when there was one (an
/// initializer that threw, a crash loop), and is null after a plain shutdown.
class broken_executor : public error {
 public:
  explicit broken_executor(const std::string& message, std::exception_ptr cause = nullptr)
      : error(message), m_cause(std::move(cause)) {}

  /// The exception that broke the executor, or null.
  [[nodiscard]] std::exception_ptr cause() const noexcept { return m_cause; }

 private:
  std::exception_ptr m_cause;
};

/// A worker process died while it held a task.
///
/// Exactly one of `signal()` and `exit_code()` is meaningful: `signal()` is the
/// signal that killed the worker (0 if it exited), `exit_code()` the status it
/// exited with (-1 if it was killed by a signal).
class worker_crashed : public error {
 public:
  worker_crashed(int pid, int signal, int exit_code, std::string task)
      : error(describe(pid, signal, exit_code, task)), m_pid(pid), m_signal(signal), m_exit_code(exit_code),
        m_task(std::move(task)) {}

  /// The process id of the worker that died.
  [[nodiscard]] int pid() const noexcept { return m_pid; }
  /// The signal that killed it, or 0 if it exited.
  [[nodiscard]] int signal() const noexcept { return m_signal; }
  /// Its exit status, or -1 if a signal killed it.
  [[nodiscard]] int exit_code() const noexcept { return m_exit_code; }
  /// A description of the task it was running.
  [[nodiscard]] const std::string& task() const noexcept { return m_task; }

 private:
  static std::string describe(int pid, int signal, int exit_code, const std::string& task) {
    std::string text = "worker " + std::to_string(pid);
    if (!task.empty()) {
      text += " running " + task;
    }
    if (signal != 0) {
      const char* name = ::strsignal(signal);
      text += " was killed by signal " + std::to_string(signal);
      if (name != nullptr) {
        text += std::string(" (") + name + ")";
      }
    } else {
      text += " exited with status " + std::to_string(exit_code);
    }
    return text;
  }

  int m_pid;
  int m_signal;
  int m_exit_code;
  std::string m_task;
};

/// An exception raised in another process, carried back as text.
///
/// `what()` reads "<type name>: <message>"; the parts are kept apart so a
/// caller can dispatch on the original type's name.
class remote_error : public error {
 public:
  remote_error(std::string type_name, std::string message, std::string trace = {})
      : error(type_name + ": " + message), m_type_name(std::move(type_name)), m_message(std::move(message)),
        m_trace(std::move(trace)) {}

  /// The demangled type name of the original exception.
  [[nodiscard]] const std::string& type_name() const noexcept { return m_type_name; }
  /// The original exception's `what()`.
  [[nodiscard]] const std::string& message() const noexcept { return m_message; }
  /// Where it was raised, when the other side could tell (may be empty).
  [[nodiscard]] const std::string& trace() const noexcept { return m_trace; }

 private:
  std::string m_type_name;
  std::string m_message;
  std::string m_trace;
};

/// A value could not be turned into bytes, or bytes back into a value (a
/// process pool's or an MPI pool's arguments and results).
class serialization_error : public error {
 public:
  using error::error;
};

/// What went wrong in a misuse of a promise or a future.
enum class future_errc {
  no_state,                  ///< the future or promise is empty (moved from, default made)
  future_already_retrieved,  ///< `promise::get_future()` called twice
  value_already_retrieved,   ///< `future::get()` called twice
  promise_already_satisfied, ///< a promise given a result twice
  broken_promise,            ///< the promise was destroyed without a result
};

/// Misuse of a promise or a future: a clear error instead of undefined behaviour.
class future_error : public error {
 public:
  explicit future_error(future_errc code) : error(describe(code)), m_code(code) {}

  /// Which misuse it was.
  [[nodiscard]] future_errc code() const noexcept { return m_code; }

 private:
  static const char* describe(future_errc code) noexcept {
    switch (code) {
    case future_errc::no_state:
      return "future_error: no shared state (the future or promise is empty or was moved from)";
    case future_errc::future_already_retrieved:
      return "future_error: promise::get_future() was already called";
    case future_errc::value_already_retrieved:
      return "future_error: future::get() was already called; the value was taken";
    case future_errc::promise_already_satisfied:
      return "future_error: the promise already has a result";
    case future_errc::broken_promise:
      return "future_error: broken promise (destroyed without a result)";
    }
    return "future_error";
  }

  future_errc m_code;
};

namespace detail {
/// The demangled form of a type name from `typeid(...).name()` (the name
/// itself if it cannot be demangled). The one demangler every module uses.
inline std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> text(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && text ? std::string(text.get()) : std::string(mangled);
}
} // namespace detail

/// An exception told as text: its demangled type name and its `what()`.
struct exception_text {
  std::string type;    ///< e.g. "std::invalid_argument"; "unknown exception" if the type is unknown
  std::string message; ///< `what()`, or "(not a std::exception)"
};

/// Tells the exception in `error` as text, without letting it escape; a null
/// pointer gives two empty strings. The one description every simul module
/// uses (exception handlers, remote errors, logs).
/// Thread-safety: any thread.
[[nodiscard]] inline exception_text describe_exception(const std::exception_ptr& error) {
  if (!error) {
    return {};
  }
  exception_text text{"unknown exception", {}};
  try {
    std::rethrow_exception(error);
  } catch (...) {
    if (const std::type_info* type = abi::__cxa_current_exception_type()) {
      text.type = detail::demangle(type->name());
    }
    try {
      throw;
    } catch (const std::exception& e) {
      text.message = e.what();
    } catch (...) {
      text.message = "(not a std::exception)";
    }
  }
  return text;
}

/// "<type>: <message>" for the exception in `error`; empty for a null pointer.
/// Thread-safety: any thread.
[[nodiscard]] inline std::string describe(const std::exception_ptr& error) {
  if (!error) {
    return {};
  }
  auto text = describe_exception(error);
  return text.type + ": " + text.message;
}

} // namespace simul
