// simul-compare: the same work, five ways — the flagship comparison.
//
// One CPU-bound workload (count primes in ranges) and one I/O-bound workload
// (many blocking waits), each run
//
//   sequential     inline_executor: one task after another on this thread
//   thread pool    thread_pool: the tasks spread over threads
//   process pool   process_pool: the tasks spread over forked workers
//   event loop     coroutines on one event loop thread
//   loop + pool    coroutines on the loop awaiting a pool's futures
//
// and printed as a table of wall time, speedup over sequential and CPU use.
// The three executors run the very same submit loop (`run_on`), which is the
// point of simul's shared executor interface.
//
//   CPU-bound                              I/O-bound
//   sequential   ████████████ 1x           sequential   ████████████ 1x
//   threads      ██████ 2x (cores)         threads      █ many waits overlap
//   processes    ██████ 2x (cores)         processes    ██████ (workers)
//   event loop   ████████████ 1x (1 core)  event loop   ▏ all waits overlap
//   loop + pool  ██████ 2x                 loop + pool  █
//
// Options: --quick (smaller sizes), --svg FILE, --json FILE, --python (run the
// same workloads with asyncio and concurrent.futures into the same table),
// --trace DIR (after the timed rounds, one more run of each mode, traced:
// DIR/<workload>-<mode>.json and .svg, see docs/tracing.md).
// Under mpirun, --mpi adds an "MPI pool" row to the CPU table: the same tasks
// on the job's worker ranks (`mpirun -n 3 simul-compare --mpi`: rank 0 runs
// this program, ranks 1 and 2 serve); with --python too, an mpi4py.futures
// row on the same work, launched by rank 0 as a job of its own.

#include "python_script.hpp"
#include "report.hpp"
#include "workloads.hpp"

#include <simul/simul.hpp>

#if __has_include(<simul/mpipool.hpp>)
#define SIMUL_COMPARE_HAS_MPI 1
#else
#define SIMUL_COMPARE_HAS_MPI 0
#endif

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using compare::measurement;
using compare::sizes;

/// Busy and total jiffies of the whole machine, from /proc/stat.
std::pair<long long, long long> cpu_ticks() {
  std::ifstream stat("/proc/stat");
  std::string label;
  stat >> label;
  long long total = 0, idle = 0, value = 0;
  for (int i = 0; stat >> value && i < 10; ++i) {
    total += value;
    if (i == 3 || i == 4) { // idle, iowait
      idle += value;
    }
  }
  return {total - idle, total};
}

/// One way of running one workload, measured `rounds` times.
struct mode_run {
  std::string workload;
  std::string mode;
  std::string setup;
  std::function<long(const sizes&)> run;
  std::vector<double> walls;
  std::vector<double> busy;
  long check = 0;
};

/// Times `m.run(z)` once, with the machine's CPU use while it lasted.
void time_once(mode_run& m, const sizes& z) {
  const auto [busy0, total0] = cpu_ticks();
  const auto start = std::chrono::steady_clock::now();
  m.check = m.run(z);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto [busy1, total1] = cpu_ticks();
  m.walls.push_back(wall);
  m.busy.push_back(total1 > total0 ? static_cast<double>(busy1 - busy0) / static_cast<double>(total1 - total0) : 0);
  std::fprintf(stderr, "  %-4s %-13s %8.3f s\n", m.workload.c_str(), m.mode.c_str(), wall);
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const auto n = values.size();
  return n == 0 ? 0 : n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

measurement summarise(const mode_run& m, const std::string& runtime) {
  measurement out;
  out.workload = m.workload;
  out.runtime = runtime;
  out.mode = m.mode;
  out.setup = m.setup;
  out.wall_seconds = median(m.walls);
  out.cpu_busy = median(m.busy);
  out.check = m.check;
  out.runs = static_cast<int>(m.walls.size());
  return out;
}

// The sequential baseline: inline_executor, each task a trace::span. Tasks run
// on the submitting thread, where no executor hook sees them; the span puts
// each one on the trace (and costs a string and a relaxed load when off).
class sequential_executor {
 public:
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) {
    simul::trace::span task("task");
    return m_inner.submit(std::forward<F>(f), std::forward<Args>(args)...);
  }
  void shutdown(simul::shutdown_options options = {}) noexcept { m_inner.shutdown(options); }

 private:
  simul::inline_executor m_inner;
};
static_assert(simul::executor<sequential_executor>);

// The same submit loop for every executor: that is what the shared interface buys.
template <simul::executor E>
long cpu_on(E& ex, const sizes& z) {
  std::vector<simul::future<long>> parts;
  for (int i = 0; i < z.cpu_tasks; ++i) {
    parts.push_back(ex.submit(&compare::count_primes, z.cpu_base + i * z.cpu_span, z.cpu_base + (i + 1) * z.cpu_span));
  }
  long total = 0;
  for (auto& part : parts) {
    total += part.get();
  }
  return total;
}

template <simul::executor E>
long io_on(E& ex, const sizes& z) {
  std::vector<simul::future<int>> waits;
  for (int i = 0; i < z.io_tasks; ++i) {
    waits.push_back(ex.submit(&compare::blocking_wait, z.io_milliseconds));
  }
  long total = 0;
  for (auto& w : waits) {
    total += w.get();
  }
  return total;
}

// On the loop, CPU work holds the loop's one thread: no gain, as in asyncio.
simul::task<long> count_primes_on_loop(long first, long last) { co_return compare::count_primes(first, last); }

simul::task<long> cpu_on_loop(sizes z) {
  std::vector<simul::task<long>> parts;
  for (int i = 0; i < z.cpu_tasks; ++i) {
    parts.push_back(count_primes_on_loop(z.cpu_base + i * z.cpu_span, z.cpu_base + (i + 1) * z.cpu_span));
  }
  long total = 0;
  for (long part : co_await simul::gather(std::move(parts))) {
    total += part;
  }
  co_return total;
}

simul::task<long> wait_on_loop(int milliseconds) {
  co_await simul::sleep(std::chrono::milliseconds(milliseconds));
  co_return milliseconds;
}

simul::task<long> io_on_loop(sizes z) {
  std::vector<simul::task<long>> waits;
  for (int i = 0; i < z.io_tasks; ++i) {
    waits.push_back(wait_on_loop(z.io_milliseconds));
  }
  long total = 0;
  for (long w : co_await simul::gather(std::move(waits))) {
    total += w;
  }
  co_return total;
}

// The loop with a pool behind it: coroutines await the pool's futures, and
// the loop thread stays free while the pool works.
template <class Future>
simul::task<long> await_part(Future part) {
  co_return co_await std::move(part);
}

simul::task<long> cpu_on_loop_with(simul::process_pool* procs, sizes z) {
  std::vector<simul::task<long>> parts;
  for (int i = 0; i < z.cpu_tasks; ++i) {
    parts.push_back(await_part(
        procs->submit(&compare::count_primes, z.cpu_base + i * z.cpu_span, z.cpu_base + (i + 1) * z.cpu_span)));
  }
  long total = 0;
  for (long part : co_await simul::gather(std::move(parts))) {
    total += part;
  }
  co_return total;
}

simul::task<long> io_on_loop_with(simul::thread_pool* pool, sizes z) {
  std::vector<simul::task<long>> waits;
  for (int i = 0; i < z.io_tasks; ++i) {
    waits.push_back(await_part(pool->submit(&compare::blocking_wait, z.io_milliseconds)));
  }
  long total = 0;
  for (long w : co_await simul::gather(std::move(waits))) {
    total += w;
  }
  co_return total;
}

// Runs `command`, appending its stdout to `output` (and echoing it to stderr).
int run_and_read(const std::string& command, std::string& output) {
  std::fprintf(stderr, "python: %s\n", command.c_str());
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    return -1;
  }
  char buffer[4096];
  while (fgets(buffer, sizeof buffer, pipe) != nullptr) {
    output += buffer;
    std::fputs(buffer, stderr);
  }
  return pclose(pipe);
}

/// One round of the Python side (its own warm-up first), as JSON lines.
std::vector<measurement> run_python(const sizes& z, int workers, int io_threads, int mpi_ranks) {
  const char* python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  char path[] = "/tmp/simul-compare-XXXXXX.py";
  const int fd = mkstemps(path, 3);
  if (fd < 0) {
    throw std::runtime_error("--python: cannot create a temporary file for the Python script");
  }
  const std::string script = compare::python_script;
  if (write(fd, script.data(), script.size()) != static_cast<ssize_t>(script.size())) {
    close(fd);
    unlink(path);
    throw std::runtime_error("--python: cannot write the Python script");
  }
  close(fd);
  const std::string command = std::string(python) + " " + path + " --cpu-tasks " + std::to_string(z.cpu_tasks) +
                              " --cpu-span " + std::to_string(z.cpu_span) + " --cpu-base " +
                              std::to_string(z.cpu_base) + " --io-tasks " + std::to_string(z.io_tasks) + " --io-ms " +
                              std::to_string(z.io_milliseconds) + " --workers " + std::to_string(workers) +
                              " --io-threads " + std::to_string(io_threads) + " --warm-up";
  std::string output;
  int status = run_and_read(command, output);
  if (status == 0 && mpi_ranks > 1) {
    // mpi4py.futures on the same work, as a job of its own: a fresh mpirun,
    // with the environment of this job's rank left out (env -i).
    std::string env = "env -i PATH=/usr/bin:/bin";
    for (const char* keep : {"HOME", "OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"}) {
      if (const char* value = std::getenv(keep)) {
        env += std::string(" ") + keep + "=" + value;
      }
    }
    status = run_and_read(env + " mpirun --oversubscribe -n " + std::to_string(mpi_ranks) + " " + python +
                              " -m mpi4py.futures " + command.substr(command.find(path)) + " --mpi4py",
                          output);
  }
  unlink(path);
  if (status != 0) {
    throw std::runtime_error(mpi_ranks > 1 ? "--python: the Python side failed (python3, and mpi4py for --mpi?)"
                                           : "--python: the Python side failed (is python3 installed?)");
  }
  return compare::parse_python_lines(output);
}

/// The median of each Python mode over its rounds.
void results_from_rounds(const std::vector<std::vector<measurement>>& rounds, std::vector<measurement>& results) {
  if (rounds.empty()) {
    return;
  }
  for (std::size_t i = 0; i < rounds.front().size(); ++i) {
    mode_run m{rounds.front()[i].workload, rounds.front()[i].mode, rounds.front()[i].setup, {}, {}, {}, 0};
    for (const auto& round : rounds) {
      if (i < round.size() && round[i].mode == m.mode && round[i].workload == m.workload) {
        m.walls.push_back(round[i].wall_seconds);
        m.busy.push_back(round[i].cpu_busy);
        m.check = round[i].check;
      }
    }
    results.push_back(summarise(m, "python"));
  }
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  return static_cast<bool>(out);
}

/// "loop + pool" -> "loop-pool": a file name.
std::string slug(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c)) != 0) {
      out += c;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  return out;
}

/// One more, untimed run of each mode with tracing on: a timeline per mode in
/// `dir`, and the I/O workload on the loop above the same on threads in
/// io-loop-vs-threads.svg.
void trace_modes(std::vector<mode_run>& modes, const sizes& z, const std::string& dir) {
  std::filesystem::create_directories(dir);
  std::vector<simul::trace::svg_section> io_pair(2);
  for (auto& m : modes) {
    simul::trace::start();
    (void)m.run(z);
    simul::trace::stop();
    const auto base = dir + "/" + m.workload + "-" + slug(m.mode);
    const auto timeline = simul::trace::collect();
    simul::trace::write_json(base + ".json", timeline);
    simul::trace::write_svg(base + ".svg", {{m.workload + ", " + m.mode + " (" + m.setup + ")", timeline}});
    std::fprintf(stderr, "  traced %s.json and .svg\n", base.c_str());
    if (m.workload == "io" && (m.mode == "event loop" || m.mode == "thread pool")) {
      io_pair[m.mode == "event loop" ? 0 : 1] = {"I/O-bound, " + m.mode + " (" + m.setup + ")", timeline};
    }
  }
  simul::trace::write_svg(dir + "/io-loop-vs-threads.svg", io_pair);
}

int usage(const char* program, int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: %s [--quick] [--python] [--mpi] [--rounds N] [--svg FILE] [--json FILE] [--trace DIR]\n"
               "  --quick      smaller workloads (seconds; about a minute with --python)\n"
               "  --tiny       the smallest workloads, for tests\n"
               "  --python     also run the workloads with asyncio and concurrent.futures\n"
               "  --mpi        under mpirun: add an MPI pool row (mpirun -n 3 simul-compare --mpi)\n"
               "  --rounds N   rounds of every mode, interleaved; the median is reported\n"
               "               (default 3, 1 with --tiny)\n"
               "  --svg FILE   write a bar chart of the speedups\n"
               "  --json FILE  write the raw numbers\n"
               "  --trace DIR  then run each mode once more, traced: DIR/<workload>-<mode>.json and .svg\n",
               program);
  return code;
}

} // namespace

int main(int argc, char** argv) {
  bool quick = false;
  bool tiny = false;
  bool python = false;
  bool mpi = false;
  int rounds = 0;
  std::string svg_path;
  std::string json_path;
  std::string trace_dir;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--tiny") {
      tiny = true;
    } else if (arg == "--python") {
      python = true;
    } else if (arg == "--mpi") {
      mpi = true;
    } else if (arg == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
      if (rounds < 1) {
        std::fprintf(stderr, "simul-compare: --rounds takes a positive number\n");
        return usage(argv[0], 2);
      }
    } else if ((arg == "--svg" || arg == "--json") && i + 1 < argc) {
      (arg == "--svg" ? svg_path : json_path) = argv[++i];
    } else if (arg == "--trace" && i + 1 < argc) {
      trace_dir = argv[++i];
    } else if (arg == "--help" || arg == "-h") {
      return usage(argv[0], 0);
    } else {
      std::fprintf(stderr, "simul-compare: unknown or incomplete option '%s'\n", arg.c_str());
      return usage(argv[0], 2);
    }
  }

  const sizes z = tiny ? compare::tiny_sizes : quick ? compare::quick_sizes : compare::full_sizes;
  const int cores = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  // As concurrent.futures: CPU work gets one worker per core; waits get more
  // threads than cores, since a waiting thread uses no CPU.
  const int workers = cores;
  const int io_threads = 16;

  if (rounds == 0) {
    rounds = tiny ? 1 : 3;
  }

  std::vector<measurement> results;
#if SIMUL_COMPARE_HAS_MPI
  // First of all: the worker ranks serve inside this constructor and never
  // come back, and no process pool has forked yet on rank 0.
  std::optional<simul::mpi_pool> ranks;
  if (mpi) {
    try {
      ranks.emplace(argc, argv);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "simul-compare: --mpi: %s\n", e.what());
      return 1;
    }
  }
#else
  if (mpi) {
    std::fprintf(stderr, "simul-compare: --mpi: this build has no MPI pool (MPI was not found at configure time)\n");
    return 2;
  }
#endif
  int mpi_ranks = 0;
  try {
    // The process pool first: its zygote forks before this program starts threads.
    simul::process_pool procs({.workers = static_cast<std::size_t>(workers)});
    simul::thread_pool cpu_threads({.workers = static_cast<std::size_t>(workers), .name = "compare-cpu"});
    simul::thread_pool io_pool({.workers = static_cast<std::size_t>(io_threads), .name = "compare-io"});
    sequential_executor sequential;
    const auto w = std::to_string(workers);
    const auto t = std::to_string(io_threads);

    std::vector<mode_run> modes;
    auto add = [&](std::string workload, std::string mode, std::string setup, std::function<long(const sizes&)> run) {
      modes.push_back({std::move(workload), std::move(mode), std::move(setup), std::move(run), {}, {}, 0});
    };
    add("cpu", "sequential", "one thread", [&](const sizes& s) { return cpu_on(sequential, s); });
    add("cpu", "thread pool", w + " threads", [&](const sizes& s) { return cpu_on(cpu_threads, s); });
    add("cpu", "process pool", w + " processes", [&](const sizes& s) { return cpu_on(procs, s); });
#if SIMUL_COMPARE_HAS_MPI
    if (ranks) {
      mpi_ranks = ranks->size();
      add("cpu", "MPI pool", std::to_string(ranks->workers()) + " worker ranks",
          [&](const sizes& s) { return cpu_on(*ranks, s); });
    }
#endif
    add("cpu", "event loop", "one loop thread", [](const sizes& s) { return simul::run(cpu_on_loop(s)); });
    add("cpu", "loop + pool", "loop + " + w + " processes",
        [&](const sizes& s) { return simul::run(cpu_on_loop_with(&procs, s)); });
    add("io", "sequential", "one thread", [&](const sizes& s) { return io_on(sequential, s); });
    add("io", "thread pool", t + " threads", [&](const sizes& s) { return io_on(io_pool, s); });
    add("io", "process pool", w + " processes", [&](const sizes& s) { return io_on(procs, s); });
    add("io", "event loop", "one loop thread", [](const sizes& s) { return simul::run(io_on_loop(s)); });
    add("io", "loop + pool", "loop + " + t + " threads",
        [&](const sizes& s) { return simul::run(io_on_loop_with(&io_pool, s)); });

    // A warm-up round at the smallest sizes wakes the CPUs, the pools' workers
    // and the allocator before anything is timed: a cold first run inflates
    // the sequential baseline, and so every speedup.
    for (auto& m : modes) {
      (void)m.run(compare::tiny_sizes);
    }
    // The rounds interleave every mode, simul's and Python's, so that a slow
    // stretch of the machine spreads over all of them instead of one.
    std::vector<std::vector<measurement>> python_rounds;
    for (int round = 1; round <= rounds; ++round) {
      std::fprintf(stderr, "simul, round %d of %d:\n", round, rounds);
      for (auto& m : modes) {
        time_once(m, z);
      }
      if (python) {
        python_rounds.push_back(run_python(z, workers, io_threads, mpi_ranks));
      }
    }
    if (!trace_dir.empty()) {
      std::fprintf(stderr, "simul, traced (not timed):\n");
      trace_modes(modes, z, trace_dir);
    }
    for (const auto& m : modes) {
      results.push_back(summarise(m, "simul"));
    }
    if (python) {
      results_from_rounds(python_rounds, results);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "simul-compare: %s\n", e.what());
    return 1;
  }

  // Every mode must agree on the answer, or the comparison means nothing.
  for (const auto& m : results) {
    for (const auto& other : results) {
      if (m.workload == other.workload && m.check != other.check) {
        std::fprintf(stderr, "simul-compare: %s/%s answered %ld but %s/%s answered %ld\n", m.runtime.c_str(),
                     m.mode.c_str(), m.check, other.runtime.c_str(), other.mode.c_str(), other.check);
        return 1;
      }
    }
  }

  // Sort by workload (cpu first) keeping each runtime's mode order.
  std::stable_sort(results.begin(), results.end(),
                   [](const measurement& a, const measurement& b) { return a.workload < b.workload; });
  compare::compute_speedups(results, cores);
  std::cout << compare::format_table(results, cores);
  if (!svg_path.empty() && !write_file(svg_path, compare::format_svg(results, cores))) {
    std::fprintf(stderr, "simul-compare: cannot write %s\n", svg_path.c_str());
    return 1;
  }
  if (!json_path.empty() && !write_file(json_path, compare::format_json(results, cores,
                                                                        tiny    ? "tiny"
                                                                        : quick ? "quick"
                                                                                : "full"))) {
    std::fprintf(stderr, "simul-compare: cannot write %s\n", json_path.c_str());
    return 1;
  }
  return 0;
}
