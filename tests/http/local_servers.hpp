#pragma once

// Servers on loopback for simul::http's tests and benchmarks: a Python
// script that prints its ports (test_server.py, the benchmark's aiohttp app)
// and nginx serving a folder over HTTP/1.1 and over TLS with HTTP/2. Each is
// a child process, stopped by the destructor.

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace simul::test {

/// A child process; its stdin is a pipe whose closing asks it to stop.
class child_process {
 public:
  child_process() = default;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process() { stop(); }

  /// Starts argv[0] with these arguments; returns its stdout (read end).
  int start(const std::vector<std::string>& argv) {
    int to_child[2];
    int from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe2 failed");
    }
    m_pid = ::fork();
    if (m_pid < 0) {
      throw std::runtime_error("fork failed");
    }
    if (m_pid == 0) {
      ::dup2(to_child[0], 0);
      ::dup2(from_child[1], 1);
      std::vector<char*> args;
      for (const auto& a : argv) {
        args.push_back(const_cast<char*>(a.c_str()));
      }
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    m_stdin = to_child[1];
    return from_child[0];
  }

  void stop() {
    if (m_stdin >= 0) {
      ::close(m_stdin);
      m_stdin = -1;
    }
    if (m_pid > 0) {
      ::kill(m_pid, SIGTERM);
      int status = 0;
      ::waitpid(m_pid, &status, 0);
      m_pid = -1;
    }
  }

 private:
  pid_t m_pid = -1;
  int m_stdin = -1;
};

/// Runs `python script args...` and reads the ports it prints on its first line.
inline std::vector<int> start_python_server(child_process& child, const std::vector<std::string>& argv,
                                            int port_count) {
  const int out_fd = child.start(argv);
  std::FILE* out = ::fdopen(out_fd, "r");
  std::vector<int> ports;
  int port = 0;
  while (static_cast<int>(ports.size()) < port_count && out != nullptr && std::fscanf(out, "%d", &port) == 1) {
    ports.push_back(port);
  }
  if (out != nullptr) {
    std::fclose(out);
  }
  if (static_cast<int>(ports.size()) != port_count) {
    throw std::runtime_error(argv.at(1) + " did not start (is python3-aiohttp installed?)");
  }
  return ports;
}

/// A free loopback TCP port (bound, then closed: another process could take it meanwhile).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// True once something accepts connections on 127.0.0.1:port.
inline bool wait_listening(int port, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

/// nginx serving `dir`/www on 127.0.0.1: `port` over HTTP/1.1 and
/// `tls_port` over TLS with HTTP/2 (the test certificate of data/tls).
struct nginx_server {
  child_process process;
  int port = 0;
  int tls_port = 0;
  std::string dir;

  /// Empty when it started; else why not (no nginx, it failed).
  std::string start(const std::string& nginx, const std::string& tls_dir, const std::string& work_dir) {
    if (::access(nginx.c_str(), X_OK) != 0) {
      return nginx + " is not installed (Debian: nginx-light)";
    }
    dir = work_dir;
    ::mkdir(dir.c_str(), 0755);
    ::mkdir((dir + "/www").c_str(), 0755);
    port = free_port();
    tls_port = free_port();
    std::ofstream conf(dir + "/nginx.conf");
    conf << "daemon off; master_process off; worker_processes 1;\n"
         << "error_log " << dir << "/error.log; pid " << dir << "/nginx.pid;\n"
         << "events { worker_connections 4096; }\n"
         << "http {\n  access_log off;\n"
         << "  client_body_temp_path " << dir << "; proxy_temp_path " << dir << "; fastcgi_temp_path " << dir
         << "; uwsgi_temp_path " << dir << "; scgi_temp_path " << dir << ";\n"
         << "  keepalive_requests 100000;\n"
         << "  types { application/json json; application/octet-stream bin; }\n"
         << "  server { listen 127.0.0.1:" << port << "; root " << dir << "/www; }\n"
         << "  server { listen 127.0.0.1:" << tls_port << " ssl http2; root " << dir << "/www;\n"
         << "    add_header X-Connection $connection always;\n"
         << "    ssl_certificate " << tls_dir << "/localhost.pem; ssl_certificate_key " << tls_dir
         << "/localhost.key; }\n}\n";
    conf.close();
    process.start({nginx, "-p", dir, "-c", dir + "/nginx.conf", "-e", dir + "/error.log"});
    if (!wait_listening(port, std::chrono::seconds(5)) || !wait_listening(tls_port, std::chrono::seconds(5))) {
      process.stop();
      return "nginx did not start (see " + dir + "/error.log)";
    }
    return {};
  }

  /// Writes `body` to www/`name`.
  void put(const std::string& name, const std::string& body) const {
    std::ofstream(dir + "/www/" + name, std::ios::binary) << body;
  }
};

} // namespace simul::test
