#pragma once

// What the comparison measured, and the three ways it is shown: a table on
// stdout, raw numbers as JSON, and an SVG bar chart of the speedups.

#include <string>
#include <vector>

namespace compare {

/// One workload run one way.
struct measurement {
  std::string workload; ///< "cpu" or "io"
  std::string runtime;  ///< "simul" or "python"
  std::string mode;     ///< "sequential", "thread pool", "process pool", "event loop", "loop + pool"
  std::string setup;    ///< e.g. "2 threads"
  double wall_seconds = 0;
  double cpu_busy = 0;  ///< the whole machine's CPU busy fraction during the run, 0..1
  long check = 0;       ///< the workload's answer, identical in every mode
  double speedup = 0;   ///< the same runtime's sequential wall time / this wall time
  int runs = 1;         ///< rounds measured; wall_seconds and cpu_busy are their medians
  bool suspect = false; ///< a CPU-bound speedup above the core count: a measurement fault, not a result
};

/// Fills in `speedup` from each runtime's sequential run of the same workload,
/// and marks as suspect a CPU-bound speedup above `cores` (more than the
/// machine can give: the sequential baseline was slow, not the rest fast).
void compute_speedups(std::vector<measurement>& results, int cores);

/// The table printed on stdout.
std::string format_table(const std::vector<measurement>& results, int cores);

/// The raw numbers.
std::string format_json(const std::vector<measurement>& results, int cores, const std::string& sizes_name);

/// A bar chart of the speedups, one panel per workload.
std::string format_svg(const std::vector<measurement>& results, int cores);

/// Parses the JSON lines the Python side prints (one flat object per line).
std::vector<measurement> parse_python_lines(const std::string& text);

} // namespace compare
