// L4: TCP echo on 127.0.0.1, 50 connections, 64-byte ping-pong; and the same
// over TLS (tls_echo_64B_x50: simul, Asio's ssl::stream, asyncio and uvloop
// with Python's ssl; raw libuv has no TLS), the load client speaking TLS 1.3
// through OpenSSL with the test certificate in data/tls.
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
//   simul_bench_loop_io --serve=simul|libuv|asio|simul-tls|asio-tls   be one of the servers

#include "../common/ratio_reporter.hpp"
#include "servers.hpp"

#include <benchmark/benchmark.h>

#include <openssl/ssl.h>

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
#include <memory>
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
server_process spawn_server(const std::string& kind, bool tls) {
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
                            tls ? "--tls=" SIMUL_TLS_DATA_DIR : nullptr, nullptr};
      execv(argv[0], const_cast<char* const*>(argv));
    } else {
      const std::string arg = "--serve=" + kind + (tls ? "-tls" : "");
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

/// The client side of one connection: plain, or TLS through OpenSSL (the
/// handshake made while the socket still blocks).
class client_connection {
 public:
  client_connection(int fd, SSL_CTX* tls) : m_fd(fd) {
    if (tls == nullptr) {
      return;
    }
    m_ssl = SSL_new(tls);
    SSL_set_fd(m_ssl, fd);
    if (SSL_connect(m_ssl) != 1) {
      throw std::runtime_error("TLS handshake with the server failed");
    }
  }
  client_connection(const client_connection&) = delete;
  client_connection& operator=(const client_connection&) = delete;
  ~client_connection() {
    SSL_free(m_ssl);
    close(m_fd);
  }
  [[nodiscard]] int fd() const noexcept { return m_fd; }

  void send(const char* data, std::size_t size) {
    const long n = m_ssl != nullptr ? SSL_write(m_ssl, data, static_cast<int>(size)) : write(m_fd, data, size);
    if (n != static_cast<long>(size)) {
      throw std::runtime_error("a short write to the server");
    }
  }
  /// Reads what is there (all of it, for TLS: OpenSSL may hold decrypted
  /// bytes); calls `on_data(n)` for each piece.
  template <class F>
  void receive(char* buffer, std::size_t size, F&& on_data) {
    if (m_ssl == nullptr) {
      const ssize_t n = read(m_fd, buffer, size);
      if (n <= 0) {
        throw std::runtime_error("the server closed a connection");
      }
      on_data(static_cast<std::size_t>(n));
      return;
    }
    while (true) {
      const int n = SSL_read(m_ssl, buffer, static_cast<int>(size));
      if (n > 0) {
        on_data(static_cast<std::size_t>(n));
        continue;
      }
      if (SSL_get_error(m_ssl, n) == SSL_ERROR_WANT_READ) {
        return;
      }
      throw std::runtime_error("the server closed a TLS connection");
    }
  }

 private:
  int m_fd;
  SSL* m_ssl = nullptr;
};

/// 50 connections ping-ponging 64 bytes: warm-up, then a measured window.
load_result run_load(const server_process& server, double window, SSL_CTX* tls) {
  std::vector<std::unique_ptr<client_connection>> conns;
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
    conns.push_back(std::make_unique<client_connection>(fd, tls));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<std::uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  for (auto& c : conns) {
    c->send(message, sizeof message);
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
      auto& c = *conns[i];
      c.receive(buffer, sizeof buffer, [&](std::size_t got_now) {
        got[i] += got_now;
        while (got[i] >= k_message) {
          got[i] -= k_message;
          if (measuring) {
            ++r.round_trips;
          }
          c.send(message, sizeof message);
        }
      });
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
  conns.clear();
  close(ep);
  return r;
}

void bm_echo(benchmark::State& state, const std::string& kind, bool tls) {
  auto server = spawn_server(kind, tls);
  SSL_CTX* client_tls = tls ? SSL_CTX_new(TLS_client_method()) : nullptr; // no verification: a benchmark
  load_result r;
  for (auto _ : state) {
    r = run_load(server, window_seconds(), client_tls);
    state.SetIterationTime(r.seconds / static_cast<double>(r.round_trips));
  }
  stop_server(server);
  SSL_CTX_free(client_tls);
  const auto rts = static_cast<double>(r.round_trips);
  state.counters["rt_per_s"] = rts / r.seconds;
  state.counters["srv_user_us_per_rt"] = r.server_user * 1e6 / rts;
  state.counters["srv_sys_us_per_rt"] = r.server_sys * 1e6 / rts;
}

} // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--serve=simul" || arg == "--serve=simul-tls") {
      return serve_simul(arg.ends_with("-tls"));
    }
    if (arg == "--serve=libuv") {
      return serve_raw_libuv();
    }
    if (arg == "--serve=asio" || arg == "--serve=asio-tls") {
      return serve_asio(arg.ends_with("-tls"));
    }
  }
  signal(SIGPIPE, SIG_IGN);
  pin_to_cpu(1);
  auto add = [](const std::string& name, const std::string& kind, bool tls) {
    benchmark::RegisterBenchmark(name.c_str(), [kind, tls](benchmark::State& s) { bm_echo(s, kind, tls); })
        ->Iterations(1)
        ->Repetitions(3)
        ->ReportAggregatesOnly(true)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  };
  for (const char* kind : {"simul", "libuv", "asio", "asyncio", "uvloop"}) {
    add(std::string("echo_64B_x50/") + kind, kind, false);
  }
  for (const char* kind : {"simul", "asio", "asyncio", "uvloop"}) {
    add(std::string("tls_echo_64B_x50/") + kind, kind, true);
  }
  benchmark::Initialize(&argc, argv);
  simul::bench::ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
