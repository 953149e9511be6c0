#pragma once

// simul::trace: a timeline of every task on every executor.
//
// While tracing is on, each loop task's run slices (every step between two
// suspensions), what it waited on, its creation and completion, each
// thread-pool task's run and each process-pool task's run (measured in the
// worker process) are recorded into a ring per thread. `write_json` writes
// them as Chrome trace-event JSON (Perfetto, chrome://tracing); `write_svg`
// draws a standalone timeline. The environment variable SIMUL_TRACE=FILE
// (ending in .json or .svg) turns tracing on at program start and writes FILE
// at exit.
//
// Thread-safety: every function may be called from any thread, also while
// other threads record; a collection taken meanwhile holds what was complete.
// Lifetime: the recorded events live until `start` or `clear` discards them;
// memory is bounded by `trace_options::events_per_thread` per thread that
// recorded (a full ring overwrites its oldest events and says how many).

#include <simul/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace simul {

/// A trace could not be written (the file could not be opened or written).
class trace_error : public error {
 public:
  using error::error;
};

namespace trace {

/// How tracing records.
struct trace_options {
  /// Events kept per thread; the oldest are overwritten beyond (at least 16).
  std::size_t events_per_thread = 16384;
};

/// Discards what was recorded and starts recording.
/// Thread-safety: any thread. Throws `simul::error` if `events_per_thread` < 16.
void start(trace_options options = {});
/// Stops recording; what was recorded stays until `start` or `clear`.
void stop() noexcept;
/// True while recording.
[[nodiscard]] bool enabled() noexcept;
/// Discards what was recorded (recording goes on if it was on).
void clear() noexcept;

/// One recorded slice, as `collect` returns it. Times are nanoseconds on the
/// steady clock.
struct slice {
  enum class kind : std::uint8_t { run, wait, task, dropped };
  kind what = kind::run;
  std::int64_t begin = 0;
  std::int64_t end = 0;
  /// The task: a task lane's `task` for loop tasks; for the others (pool
  /// tasks, spans) a number of their own, so that each has its colour.
  std::uint64_t task = 0;
  /// The task's name; for a wait, what it waited on; for `dropped`, "dropped N events".
  std::string name;
};

/// One lane: a thread (`tid` > 0), a loop task (`task` > 0), or a worker
/// process measured from its parent (`tid` == 0).
struct lane {
  int pid = 0;
  int tid = 0;
  std::uint64_t task = 0;
  std::string name;
  /// Where the task was created ("file:line"), for a task lane.
  std::string where;
  std::vector<slice> slices; ///< sorted by begin
};

/// What was recorded, as lanes: the threads first (in the order they first
/// recorded), then the loop tasks (in creation order).
struct timeline {
  std::vector<lane> lanes;
  std::int64_t begin = 0; ///< the earliest time in any slice (0 if none)
  std::int64_t end = 0;
};

/// A copy of everything recorded so far. Thread-safety: any thread, also while recording.
[[nodiscard]] timeline collect();

/// Writes `what` (by default everything recorded) as Chrome trace-event JSON.
/// Throws `simul::trace_error` if the file cannot be written.
void write_json(const std::string& path);
void write_json(const std::string& path, const timeline& what);

/// One titled picture in an SVG: its times are drawn from its own start.
struct svg_section {
  std::string title;
  timeline data;
};
/// Writes a standalone SVG: one lane per thread, process or task, slices
/// coloured by task, waits thin, a time axis. Several sections are drawn one
/// above the other on the same time scale. Throws `simul::trace_error` if
/// the file cannot be written.
void write_svg(const std::string& path);
void write_svg(const std::string& path, const std::vector<svg_section>& sections);

/// Marks a slice of the calling thread's work as a task of your own: a run
/// slice (or a wait, `waiting = true`) of the task called `name`, from
/// construction to destruction. Tasks of the same name share a lane.
/// Thread-safety: any thread. Lifetime: a scope; cheap when tracing is off.
class span {
 public:
  explicit span(std::string name, bool waiting = false);
  span(const span&) = delete;
  span& operator=(const span&) = delete;
  ~span();

 private:
  std::string m_name;
  std::int64_t m_t0 = 0;
  bool m_waiting = false;
  bool m_on = false;
};

} // namespace trace
} // namespace simul
