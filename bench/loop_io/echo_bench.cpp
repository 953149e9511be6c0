// L4: TCP echo on 127.0.0.1, 50 connections, 64-byte ping-pong.
//
// Each side's echo server runs in a child process pinned to CPU 0; this
// process is the load client, pinned to CPU 1: one thread, epoll, 50
// non-blocking sockets, each sending 64 bytes and waiting for them to come
// back before sending again. After a short warm-up it counts round trips for
// a fixed window and reads the server's CPU time from /proc/<pid>/stat.
//
// Reported per side: time per round trip (the benchmark's time, so the ratio
// line reads "peer time / simul time": above 1 means simul serves more round
// trips per second), round trips per second, and the server's user and system
// CPU microseconds per round trip.
//
//   simul_bench_loop_io                     run every side (3 repetitions, medians)
//   simul_bench_loop_io --serve=simul|libuv|asio   be one of the servers

#include "../common/ratio_reporter.hpp"
#include "servers.hpp"

#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr int k_connections = 50;
constexpr std::size_t k_message = 64;

double window_seconds() {
  if (const char* env = std::getenv("SIMUL_L4_SECONDS"); env != nullptr && std::atof(env) > 0) {
    return std::atof(env);
  }
  return 2.0;
}

void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

struct server_process {
  pid_t pid = -1;
  int port = 0;
};

/// Starts a server (this program with --serve=..., or Python) on CPU 0 and
/// reads its port.
server_process spawn_server(const std::string& kind) {
  int out[2];
  if (pipe(out) != 0) {
    throw std::runtime_error("pipe failed");
  }
  const pid_t pid = fork();
  if (pid == 0) {
    pin_to_cpu(0);
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    if (kind == "asyncio" || kind == "uvloop") {
      const char* argv[] = {"/usr/bin/python3", SIMUL_BENCH_ASYNCIO_ECHO, kind == "uvloop" ? "--uvloop" : "--asyncio",
                            nullptr};
      execv(argv[0], const_cast<char* const*>(argv));
    } else {
      const std::string arg = "--serve=" + kind;
      const char* argv[] = {"/proc/self/exe", arg.c_str(), nullptr};
      execv(argv[0], const_cast<char* const*>(argv));
    }
    _exit(127);
  }
  close(out[1]);
  std::string line;
  char c = 0;
  while (read(out[0], &c, 1) == 1 && c != '\n') {
    line += c;
  }
  close(out[0]);
  server_process s;
  s.pid = pid;
  if (std::sscanf(line.c_str(), "PORT %d", &s.port) != 1) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    throw std::runtime_error("server " + kind + " did not start: '" + line + "'");
  }
  return s;
}

void stop_server(server_process& s) {
  kill(s.pid, SIGKILL);
  waitpid(s.pid, nullptr, 0);
}

/// User and system CPU of `pid`, in seconds.
std::pair<double, double> cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command (which may contain spaces) start after ')'.
  std::istringstream rest(content.substr(content.rfind(')') + 2));
  std::string field;
  double utime = 0;
  double stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) {
      utime = std::atof(field.c_str());
    } else if (i == 15) {
      stime = std::atof(field.c_str());
    }
  }
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  return {utime / tick, stime / tick};
}

struct load_result {
  std::uint64_t round_trips = 0;
  double seconds = 0;
  double server_user = 0;
  double server_sys = 0;
};

/// 50 connections ping-ponging 64 bytes: warm-up, then a measured window.
load_result run_load(const server_process& server, double window) {
  std::vector<int> fds;
  std::vector<std::size_t> got(k_connections, 0);
  const int ep = epoll_create1(0);
  char message[k_message];
  std::memset(message, 'x', sizeof message);
  for (int i = 0; i < k_connections; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(server.port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("connect failed");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<std::uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    fds.push_back(fd);
  }
  for (int fd : fds) {
    (void)write(fd, message, sizeof message);
  }
  using clock = std::chrono::steady_clock;
  const auto warm_until = clock::now() + std::chrono::milliseconds(300);
  auto stop_at = clock::time_point::max();
  bool measuring = false;
  load_result r;
  std::pair<double, double> cpu_before{};
  clock::time_point started;
  epoll_event events[k_connections];
  char buffer[4096];
  while (true) {
    const int n = epoll_wait(ep, events, k_connections, 100);
    for (int e = 0; e < n; ++e) {
      const auto i = events[e].data.u32;
      const ssize_t got_now = read(fds[i], buffer, sizeof buffer);
      if (got_now <= 0) {
        throw std::runtime_error("the server closed a connection");
      }
      got[i] += static_cast<std::size_t>(got_now);
      while (got[i] >= k_message) {
        got[i] -= k_message;
        if (measuring) {
          ++r.round_trips;
        }
        (void)write(fds[i], message, sizeof message);
      }
    }
    const auto now = clock::now();
    if (!measuring && now >= warm_until) {
      measuring = true;
      cpu_before = cpu_seconds(server.pid);
      started = now;
      stop_at = now + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(window));
    } else if (measuring && now >= stop_at) {
      r.seconds = std::chrono::duration<double>(now - started).count();
      break;
    }
  }
  const auto cpu_after = cpu_seconds(server.pid);
  r.server_user = cpu_after.first - cpu_before.first;
  r.server_sys = cpu_after.second - cpu_before.second;
  for (int fd : fds) {
    close(fd);
  }
  close(ep);
  return r;
}

void bm_echo(benchmark::State& state, const std::string& kind) {
  auto server = spawn_server(kind);
  load_result r;
  for (auto _ : state) {
    r = run_load(server, window_seconds());
    state.SetIterationTime(r.seconds / static_cast<double>(r.round_trips));
  }
  stop_server(server);
  const auto rts = static_cast<double>(r.round_trips);
  state.counters["rt_per_s"] = rts / r.seconds;
  state.counters["srv_user_us_per_rt"] = r.server_user * 1e6 / rts;
  state.counters["srv_sys_us_per_rt"] = r.server_sys * 1e6 / rts;
}

} // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--serve=simul") {
      return serve_simul();
    }
    if (arg == "--serve=libuv") {
      return serve_raw_libuv();
    }
    if (arg == "--serve=asio") {
      return serve_asio();
    }
  }
  signal(SIGPIPE, SIG_IGN);
  pin_to_cpu(1);
  for (const char* kind : {"simul", "libuv", "asio", "asyncio", "uvloop"}) {
    benchmark::RegisterBenchmark((std::string("echo_64B_x50/") + kind).c_str(),
                                 [k = std::string(kind)](benchmark::State& s) { bm_echo(s, k); })
        ->Iterations(1)
        ->Repetitions(3)
        ->ReportAggregatesOnly(true)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::Initialize(&argc, argv);
  simul::bench::ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
