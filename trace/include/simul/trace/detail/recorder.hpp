#pragma once

// The hot path of simul::trace, for the executors' hooks (not for users:
// see <simul/trace.hpp>). Every hook first reads `g_trace_on` with a relaxed
// load; only when tracing is on does it call the out-of-line recorder, which
// writes into the calling thread's own ring without a lock.
//
// Thread-safety: every function here may be called from any thread at any time.
// Lifetime: the strings passed as `label` or `file` must live as long as the
// program (string literals, typeid names, source_location file names).

#include <atomic>
#include <cstdint>
#include <string_view>

namespace simul::detail {

/// True while tracing is on. Written by simul::trace::start/stop.
extern std::atomic<bool> g_trace_on;

[[nodiscard]] inline bool trace_on() noexcept { return g_trace_on.load(std::memory_order_relaxed); }

/// Nanoseconds on the steady clock (CLOCK_MONOTONIC: the same in every process).
std::int64_t trace_now() noexcept;

/// A run slice of the task `key` (its address; null for an anonymous task)
/// on this thread, from `t0` to `t1`. `serial` identifies the task beside its
/// address (a loop task's id); `label` is a static name for anonymous tasks.
void trace_run(const void* key, std::uint64_t serial, const char* label, std::int64_t t0, std::int64_t t1) noexcept;
/// The task `key` suspends now, waiting on `label`.
void trace_wait(const void* key, const char* label) noexcept;
/// The task `key` was created now, at `file`:`line`, with this name.
void trace_create(const void* key, std::uint64_t serial, std::string_view name, const char* file,
                  std::uint32_t line) noexcept;
/// The task `key` is called `name` from now on, and was created at `file`:`line`.
void trace_rename(const void* key, std::string_view name, const char* file, std::uint32_t line) noexcept;
/// The task `key` completed now (its name again: it may have been renamed).
void trace_end(const void* key, std::uint64_t serial, std::string_view name) noexcept;
/// A run slice measured in another process (a process-pool worker), drawn
/// on that process's lane.
void trace_remote_run(int pid, const char* label, std::int64_t t0, std::int64_t t1) noexcept;

/// A lane for slices measured in another process that its pid alone does not
/// name (an MPI rank, perhaps on another host): drawn as `name`, grouped
/// under `pid` in the JSON. Returns the lane's number (> 0; 0 if out of
/// memory), kept until exit: register each lane once, not per trace.
std::uint32_t trace_remote_lane(int pid, std::string_view name) noexcept;
/// A run slice measured in another process, already on this process's clock,
/// drawn on `lane` (from trace_remote_lane).
void trace_lane_run(std::uint32_t lane, const char* label, std::int64_t t0, std::int64_t t1) noexcept;

/// An MPI rank's answer arrived: its task ran there from `begin` to `end`
/// (this process's clock; both 0: not measured), drawn on `lane`.
inline void trace_rank_run(std::uint32_t lane, std::int64_t begin, std::int64_t end) noexcept {
  if (trace_on() && begin != 0 && lane != 0) [[unlikely]] {
    trace_lane_run(lane, "task", begin, end);
  }
}

/// Stops tracing in this process for good, and SIMUL_TRACE's file is not
/// written from it at exit: an MPI worker rank, whose tasks rank 0 draws and
/// whose environment (SIMUL_TRACE included) mpirun copied from rank 0's.
void trace_leave_to_rank_0() noexcept;

/// A process-pool answer arrived: its task ran in worker `pid` from `begin`
/// to `end` (both 0: not measured).
inline void trace_worker_run(int pid, std::int64_t begin, std::int64_t end) noexcept {
  if (trace_on() && begin != 0) [[unlikely]] {
    trace_remote_run(pid, "task", begin, end);
  }
}

/// Times one run slice of an anonymous task (a thread-pool task): a scope.
class trace_run_scope {
 public:
  explicit trace_run_scope(const char* label) noexcept {
    if (trace_on()) [[unlikely]] {
      m_label = label;
      m_t0 = trace_now();
    }
  }
  trace_run_scope(const trace_run_scope&) = delete;
  trace_run_scope& operator=(const trace_run_scope&) = delete;
  ~trace_run_scope() {
    if (m_label != nullptr) [[unlikely]] {
      trace_run(nullptr, 0, m_label, m_t0, trace_now());
    }
  }

 private:
  const char* m_label = nullptr;
  std::int64_t m_t0 = 0;
};

} // namespace simul::detail
