// F1, F2 and S1 (docs/benchmarks-loop-io.md): files and subprocesses beside
// Python in the same run.
//
//   F1_copy_200MB/{simul,python}: copy a 200 MB file in 1 MiB chunks.
//   F2_write_file_200MB/{simul,python}: write 200 MB at once; the counter
//     peak_over_data_MiB is the peak resident size above what the process
//     held before (the data itself): the target is under 8 MiB.
//   S1_200_children/{simul,asyncio}: 200 concurrent /bin/true, each with a
//     piped stdout read to its end. simul starts them with posix_spawn;
//     SIMUL_SPAWN=uv in the environment measures libuv's uv_spawn instead.
//
// The Python side is peers.py, run with /usr/bin/python3 (Debian's, with
// asyncio) once per iteration; it reports its workload's own time.
// Files go to $SIMUL_BENCH_DIR (default /tmp).

#include "../common/ratio_reporter.hpp"

#include <simul/loop.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
constexpr std::size_t k_mib = 1024 * 1024;
constexpr std::size_t k_size = 200 * k_mib;

std::string bench_dir() {
  const char* dir = std::getenv("SIMUL_BENCH_DIR");
  return dir != nullptr ? dir : "/tmp";
}

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// A field of /proc/self/status, in KiB.
std::size_t status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      return std::stoul(line.substr(key.size()));
    }
  }
  return 0;
}

/// The 200 MB source file of F1 (shared with peers.py).
std::string source_file() {
  const auto path = bench_dir() + "/f1-source.bin";
  std::ifstream probe(path, std::ios::binary | std::ios::ate);
  if (!probe || static_cast<std::size_t>(probe.tellg()) != k_size) {
    std::ofstream out(path, std::ios::binary);
    const std::string chunk(k_mib, 's');
    for (std::size_t i = 0; i < k_size / k_mib; ++i) {
      out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    }
  }
  return path;
}

/// Runs peers.py for one workload; returns its "seconds" and sets counters.
double run_peer(const char* workload, benchmark::State& state) {
  const std::string command = std::string("/usr/bin/python3 ") + SIMUL_FILES_PEERS + " " + workload + " " + bench_dir();
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  char line[1024] = {};
  if (!pipe || std::fgets(line, sizeof line, pipe.get()) == nullptr) {
    state.SkipWithError("/usr/bin/python3 peers.py failed");
    return 0;
  }
  auto field = [&](const char* name) -> double {
    const auto key = std::string("\"") + name + "\": ";
    const char* at = std::strstr(line, key.c_str());
    return at != nullptr ? std::strtod(at + key.size(), nullptr) : -1;
  };
  if (const double peak = field("peak_over_before_MiB"); peak >= 0) {
    state.counters["peak_over_data_MiB"] = peak;
  }
  return field("seconds");
}

void peer(benchmark::State& state, const char* workload) {
  for (auto _ : state) {
    state.SetIterationTime(run_peer(workload, state));
  }
}

simul::task<void> copy_file(std::string from, std::string to) {
  auto in = co_await simul::open_file(from, "r");
  auto out = co_await simul::open_file(to, "w");
  while (true) {
    auto chunk = co_await in.read(k_mib);
    if (chunk.empty()) {
      break;
    }
    co_await out.write(std::move(chunk));
  }
  co_await in.close();
  co_await out.close();
}

void f1_simul(benchmark::State& state) {
  const auto from = source_file();
  const auto to = bench_dir() + "/f1-simul.bin";
  for (auto _ : state) {
    const auto start = clock_type::now();
    simul::run(copy_file(from, to));
    state.SetIterationTime(seconds_since(start));
    // Untimed, after each copy, as peers.py does: every copy writes a new
    // file. Truncating the last copy's 200 MB instead (freeing its page
    // cache) costs about as much as the copy itself.
    std::remove(to.c_str());
  }
}

void f1_python(benchmark::State& state) {
  source_file();
  peer(state, "F1");
}

void f2_simul(benchmark::State& state) {
  const auto to = bench_dir() + "/f2-simul.bin";
  for (auto _ : state) {
    std::string data(k_size, 'w');
    std::ofstream("/proc/self/clear_refs") << "5"; // the peak from now on
    const auto before = status_kib("VmRSS");
    const auto start = clock_type::now();
    simul::run(simul::write_file(to, std::move(data)));
    state.SetIterationTime(seconds_since(start));
    const auto peak = status_kib("VmHWM");
    state.counters["peak_over_data_MiB"] = peak > before ? static_cast<double>(peak - before) / 1024.0 : 0.0;
  }
  std::remove(to.c_str());
}

simul::task<void> children(int n) {
  std::vector<simul::task_handle<int>> all;
  for (int i = 0; i < n; ++i) {
    all.push_back(simul::create_task([]() -> simul::task<int> {
      simul::subprocess_options options{.stdout_ = simul::stdio::pipe};
      auto p = co_await simul::create_subprocess_exec("/bin/true", {}, options);
      auto out = co_await p.communicate();
      (void)out;
      co_return *p.returncode();
    }()));
  }
  for (auto& h : all) {
    if (co_await h != 0) {
      throw simul::error("S1: a child failed");
    }
  }
}

void s1_simul(benchmark::State& state) {
  for (auto _ : state) {
    const auto start = clock_type::now();
    simul::run(children(200));
    state.SetIterationTime(seconds_since(start));
  }
}

} // namespace

BENCHMARK(f1_simul)->Name("F1_copy_200MB/simul")->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(f1_python)->Name("F1_copy_200MB/python")->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(f2_simul)->Name("F2_write_file_200MB/simul")->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(peer, f2_python, "F2")
    ->Name("F2_write_file_200MB/python")
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(s1_simul)->Name("S1_200_children/simul")->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(peer, s1_asyncio, "S1")
    ->Name("S1_200_children/asyncio")
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  simul::bench::ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
