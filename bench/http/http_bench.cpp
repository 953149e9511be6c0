// H1-H3: simul::http against its peers, on loopback, in one run.
//
//   H1_static_json     500 GETs of a small JSON file from nginx, 50 in flight
//   H1_handler_10ms    500 GETs from an aiohttp server whose handler sleeps 10 ms
//   H2_static_json     H1_static_json over HTTPS (HTTP/2 where the side speaks it)
//   H3_download_200MB  one 200 MB file from nginx, streamed
//
// Sides: simul (simul::http::client, a semaphore of 50), aiohttp
// (ClientSession, a semaphore of 50), curl (curl --parallel --parallel-max 50).
// The servers run pinned to CPU 0, the clients to CPU 1. Each side reports its
// wall time (the benchmark's time) and its CPU time (counter cpu_ms); H3
// also the resident memory the download added (rss_growth_MiB, simul only)
// and throughput.

#include "../common/ratio_reporter.hpp"
#include "local_servers.hpp"

#include <simul/http.hpp>
#include <simul/loop.hpp>

#include <benchmark/benchmark.h>

#include <sched.h>
#include <sys/resource.h>
#include <sys/time.h>

#include <fstream>
#include <memory>
#include <sstream>

namespace {

using simul::test::child_process;
using simul::test::nginx_server;

constexpr int k_requests = 500;
constexpr int k_inflight = 50;
constexpr long k_big = 200L * 1000 * 1000;

void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % static_cast<int>(std::max(1U, std::thread::hardware_concurrency())), &set);
  sched_setaffinity(0, sizeof set, &set);
}

double seconds(const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; }

double thread_cpu() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

long resident_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::atol(line.c_str() + 6);
    }
  }
  return 0;
}

struct servers {
  nginx_server nginx;
  child_process aiohttp;
  int aiohttp_port = 0;
  std::string error;

  servers() {
    pin_to_cpu(0); // the servers inherit CPU 0
    error = nginx.start("/usr/sbin/nginx", SIMUL_TLS_DATA_DIR, "/tmp/simul-bench-http-" + std::to_string(getpid()));
    if (error.empty()) {
      nginx.put("small.json", R"({"hello": "world", "n": 42})");
      std::ofstream big(nginx.dir + "/www/big.bin", std::ios::binary);
      const std::string block(1 << 20, 'x');
      for (long left = k_big; left > 0; left -= static_cast<long>(block.size())) {
        big.write(block.data(), std::min<long>(left, static_cast<long>(block.size())));
      }
    }
    aiohttp_port =
        simul::test::start_python_server(aiohttp, {SIMUL_BENCH_PYTHON, SIMUL_BENCH_AIOHTTP_PEER, "serve"}, 1)[0];
    pin_to_cpu(1); // this process and the peers it starts: CPU 1
  }
  ~servers() {
    nginx.process.stop();
    aiohttp.stop();
    if (!nginx.dir.empty()) {
      std::system(("rm -rf '" + nginx.dir + "'").c_str());
    }
  }
};

servers& the_servers() {
  static servers s;
  return s;
}

struct measured {
  double wall = 0;
  double cpu = 0;
  long bytes = 0;
  double rss_growth_mib = 0;
};

simul::task<long> fetch_one(simul::semaphore& limit, simul::http::client& c, std::string url) {
  co_await limit.acquire();
  try {
    auto r = co_await c.get(url);
    limit.release();
    r.raise_for_status();
    co_return static_cast<long>(r.body.size());
  } catch (...) {
    limit.release();
    throw;
  }
}

measured run_simul(const std::string& url, bool tls) {
  return simul::run([](std::string u, bool secure) -> simul::task<measured> {
    simul::http::client c(
        {.max_connections = k_inflight, .ca_file = secure ? SIMUL_TLS_DATA_DIR "/localhost.pem" : ""});
    simul::semaphore limit(k_inflight);
    const auto cpu0 = thread_cpu();
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<simul::task<long>> all;
    for (int i = 0; i < k_requests; ++i) {
      all.push_back(fetch_one(limit, c, u));
    }
    const auto sizes = co_await simul::gather(std::move(all));
    measured m;
    m.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    m.cpu = thread_cpu() - cpu0;
    for (long s : sizes) {
      m.bytes += s;
    }
    co_return m;
  }(url, tls));
}

measured run_simul_download(const std::string& url) {
  return simul::run([](std::string u) -> simul::task<measured> {
    simul::http::client c;
    const long rss0 = resident_kib();
    const auto cpu0 = thread_cpu();
    const auto t0 = std::chrono::steady_clock::now();
    auto s = co_await c.stream({.url = u});
    measured m;
    long peak = rss0;
    while (auto chunk = co_await s.body.next()) {
      m.bytes += static_cast<long>(chunk->size());
      if ((m.bytes & ((1 << 24) - 1)) < static_cast<long>(chunk->size())) {
        peak = std::max(peak, resident_kib()); // about every 16 MiB
      }
    }
    m.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    m.cpu = thread_cpu() - cpu0;
    m.rss_growth_mib = static_cast<double>(std::max(peak, resident_kib()) - rss0) / 1024.0;
    co_return m;
  }(url));
}

/// Runs a peer program; wall time from here, CPU time of the child.
measured run_peer(const std::vector<std::string>& argv, bool reads_own_times) {
  measured m;
  const auto t0 = std::chrono::steady_clock::now();
  child_process child;
  const int out = child.start(argv);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(out, buf, sizeof buf)) > 0;) {
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out);
  rusage before{};
  getrusage(RUSAGE_CHILDREN, &before);
  child.stop(); // stdin closed; SIGTERM to a process that already exited does nothing
  rusage after{};
  getrusage(RUSAGE_CHILDREN, &after);
  m.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.cpu = seconds(after.ru_utime) + seconds(after.ru_stime) - seconds(before.ru_utime) - seconds(before.ru_stime);
  if (reads_own_times) {
    std::istringstream in(text);
    in >> m.wall >> m.cpu >> m.bytes;
  }
  return m;
}

measured run_curl(const std::string& url, int count, bool tls) {
  const std::string config = the_servers().nginx.dir + "/curl-" + std::to_string(count) + ".cfg";
  {
    std::ofstream cfg(config);
    for (int i = 0; i < count; ++i) {
      cfg << "url = \"" << url << "\"\noutput = \"/dev/null\"\n";
    }
  }
  std::vector<std::string> argv = {
      "/usr/bin/curl", "-s", "-f", "--parallel", "--parallel-max", std::to_string(k_inflight), "-K", config};
  if (tls) {
    argv.insert(argv.end(), {"--cacert", SIMUL_TLS_DATA_DIR "/localhost.pem"});
  }
  return run_peer(argv, false);
}

void report(benchmark::State& state, const measured& m) {
  state.SetIterationTime(m.wall);
  state.counters["cpu_ms"] = m.cpu * 1e3;
  if (m.bytes > 0) {
    state.counters["MB_per_s"] = static_cast<double>(m.bytes) / m.wall / 1e6;
  }
}

void bm_requests(benchmark::State& state, const std::string& side, const std::string& which) {
  auto& s = the_servers();
  if (!s.error.empty()) {
    state.SkipWithError(s.error.c_str());
    return;
  }
  const bool tls = which == "tls";
  std::string url = "http://127.0.0.1:" + std::to_string(s.nginx.port) + "/small.json";
  if (tls) {
    url = "https://localhost:" + std::to_string(s.nginx.tls_port) + "/small.json";
  } else if (which == "slow") {
    url = "http://127.0.0.1:" + std::to_string(s.aiohttp_port) + "/slow10";
  }
  for (auto _ : state) {
    measured m;
    if (side == "simul") {
      m = run_simul(url, tls);
    } else if (side == "aiohttp") {
      std::vector<std::string> argv = {SIMUL_BENCH_PYTHON,         SIMUL_BENCH_AIOHTTP_PEER,  "get", url,
                                       std::to_string(k_requests), std::to_string(k_inflight)};
      if (tls) {
        argv.emplace_back(SIMUL_TLS_DATA_DIR "/localhost.pem");
      }
      m = run_peer(argv, true);
    } else {
      m = run_curl(url, k_requests, tls);
    }
    report(state, m);
  }
}

void bm_download(benchmark::State& state, const std::string& side) {
  auto& s = the_servers();
  if (!s.error.empty()) {
    state.SkipWithError(s.error.c_str());
    return;
  }
  const std::string url = "http://127.0.0.1:" + std::to_string(s.nginx.port) + "/big.bin";
  for (auto _ : state) {
    measured m = side == "simul" ? run_simul_download(url) : run_curl(url, 1, false);
    m.bytes = side == "simul" ? m.bytes : k_big;
    report(state, m);
    if (side == "simul") {
      state.counters["rss_growth_MiB"] = m.rss_growth_mib;
    }
  }
}

} // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  auto add = [](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)
        ->Iterations(1)
        ->Repetitions(3)
        ->ReportAggregatesOnly(true)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  };
  // Sides of one workload side by side, so drift hits them alike.
  for (const char* workload : {"H1_static_json", "H1_handler_10ms", "H2_static_json"}) {
    const std::string w = workload;
    const std::string which = w == "H1_static_json" ? "static" : w == "H1_handler_10ms" ? "slow" : "tls";
    for (const char* side : {"simul", "aiohttp", "curl"}) {
      const std::string s = side;
      add(w + "/" + s, [s, which](benchmark::State& st) { bm_requests(st, s, which); });
    }
  }
  for (const char* side : {"simul", "curl"}) {
    const std::string s = side;
    add("H3_download_200MB/" + s, [s](benchmark::State& st) { bm_download(st, s); });
  }
  benchmark::Initialize(&argc, argv);
  simul::bench::ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
