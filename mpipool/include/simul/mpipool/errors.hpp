#pragma once

// The errors only an MPI pool raises, and the rank-aware forms of the process
// pool's. Each derives from the error a process_pool would raise in the same
// case, so code that catches `remote_error` or `worker_crashed` from one pool
// catches them from the other.
//
// Thread-safety: plain values; a thrown error may be copied and rethrown on
// any thread.

#include <simul/core/error.hpp>

#include <string>
#include <utility>

namespace simul {

/// MPI failed (initialisation, a send or a receive), or the ranks of the job
/// do not run the same build of the program.
class mpi_error : public error {
 public:
  using error::error;
};

/// An exception raised by a task on a worker rank. `what()` reads
/// "<type name>: <message>" as for any `remote_error`; `trace()` says where
/// it ran ("rank 2 on host node7").
class mpi_remote_error : public remote_error {
 public:
  mpi_remote_error(std::string type_name, std::string message, int rank, std::string host)
      : remote_error(std::move(type_name), std::move(message), where(rank, host)), m_rank(rank),
        m_host(std::move(host)) {}

  /// The rank the task ran on.
  [[nodiscard]] int rank() const noexcept { return m_rank; }
  /// The host name of that rank.
  [[nodiscard]] const std::string& host() const noexcept { return m_host; }

  static std::string where(int rank, const std::string& host) {
    return "rank " + std::to_string(rank) + " on host " + host;
  }

 private:
  int m_rank;
  std::string m_host;
};

/// With `isolate`, the local worker process that ran the task on a worker
/// rank died (a segfault, an abort, an exit); the rank goes on serving.
/// `pid()`, `signal()` and `exit_code()` describe that local process.
class mpi_worker_crashed : public worker_crashed {
 public:
  mpi_worker_crashed(int pid, int signal, int exit_code, const std::string& task, int rank, std::string host)
      : worker_crashed(pid, signal, exit_code, task + " on " + mpi_remote_error::where(rank, host)), m_rank(rank),
        m_host(std::move(host)) {}

  /// The rank whose local worker died.
  [[nodiscard]] int rank() const noexcept { return m_rank; }
  /// The host name of that rank.
  [[nodiscard]] const std::string& host() const noexcept { return m_host; }

 private:
  int m_rank;
  std::string m_host;
};

} // namespace simul
