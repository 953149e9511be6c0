// concurrent_http: fetch names from a small JSON API, one after another and
// then all at once — the "concurrent HTTP requests" case of the notes.
//
// A tiny HTTP/1.1 server on the loop's streams (loopback only) serves
// GET /names/<id> as {"id": <id>, "name": "..."}; every answer takes 10 ms,
// as a real service's database lookup would. The client, on the same loop,
// fetches N random ids:
//
//   one after another      GET 17 ──10ms──▶ GET 4 ──10ms──▶ GET 33 ...   ≈ N × 10 ms
//   concurrently (gather)  GET 17 ──10ms──▶
//                          GET 4  ──10ms──▶                              ≈ 10 ms
//                          GET 33 ──10ms──▶
//
// It prints both times and checks that both runs fetched the same names.

#include <simul/loop.hpp>

#include <chrono>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr const char* names[] = {"Ada",    "Alan",    "Barbara", "Edsger", "Grace",   "Ken",  "Dennis",
                                 "Bjarne", "Frances", "John",    "Leslie", "Niklaus", "Tony", "Radia"};
constexpr int name_count = sizeof names / sizeof names[0];

std::string name_of(int id) { return std::string(names[id % name_count]) + "-" + std::to_string(id); }

/// Serves one connection: one request, one JSON answer, then close.
simul::task<void> serve(simul::stream_reader reader, simul::stream_writer writer) {
  const std::string request_line = co_await reader.readline();
  while ((co_await reader.readline()) != "\r\n") {
    // Headers are not needed: every request is a GET.
  }
  std::string status = "200 OK";
  std::string body;
  int id = 0;
  if (std::sscanf(request_line.c_str(), "GET /names/%d HTTP/1.1", &id) == 1 && id >= 0) {
    co_await simul::sleep(10ms); // the service's own lookup
    body = "{\"id\": " + std::to_string(id) + ", \"name\": \"" + name_of(id) + "\"}";
  } else {
    status = "404 Not Found";
    body = "{\"error\": \"not found\"}";
  }
  writer.write("HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  co_await writer.drain();
  writer.close();
  co_await writer.wait_closed();
}

/// GET /names/<id> on a fresh connection; returns the name from the JSON body.
simul::task<std::string> fetch_name(int port, int id) {
  auto [reader, writer] = co_await simul::open_connection("127.0.0.1", port);
  writer.write("GET /names/" + std::to_string(id) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  co_await writer.drain();
  const std::string status = co_await reader.readline();
  std::size_t length = 0;
  for (std::string header = co_await reader.readline(); header != "\r\n"; header = co_await reader.readline()) {
    if (header.rfind("Content-Length: ", 0) == 0) {
      length = std::stoul(header.substr(16));
    }
  }
  const std::string body = co_await reader.readexactly(length);
  writer.close();
  co_await writer.wait_closed();
  if (status.rfind("HTTP/1.1 200", 0) != 0) {
    throw std::runtime_error("GET /names/" + std::to_string(id) + ": " + status);
  }
  const auto start = body.find("\"name\": \"") + 9;
  co_return body.substr(start, body.find('"', start) - start);
}

simul::task<int> client(int requests) {
  auto server = co_await simul::start_server(serve, "127.0.0.1", 0);
  const int port = server.port();
  std::printf("serving on 127.0.0.1:%d\n", port);

  std::mt19937 random(2024);
  std::vector<int> ids;
  for (int i = 0; i < requests; ++i) {
    ids.push_back(static_cast<int>(random() % 1000));
  }

  auto start = clock_type::now();
  std::vector<std::string> one_by_one;
  for (int id : ids) {
    one_by_one.push_back(co_await fetch_name(port, id));
  }
  const double sequential = std::chrono::duration<double>(clock_type::now() - start).count();

  start = clock_type::now();
  std::vector<simul::task<std::string>> fetches;
  for (int id : ids) {
    fetches.push_back(fetch_name(port, id));
  }
  const std::vector<std::string> together = co_await simul::gather(std::move(fetches));
  const double concurrent = std::chrono::duration<double>(clock_type::now() - start).count();

  server.close();
  co_await server.wait_closed();

  std::printf("first names: %s, %s, %s\n", together[0].c_str(), together[1].c_str(), together[2].c_str());
  std::printf("one after another: %d requests in %.3f s\n", requests, sequential);
  std::printf("concurrently:      %d requests in %.3f s (%.1fx)\n", requests, concurrent, sequential / concurrent);
  if (one_by_one != together) {
    std::printf("the two runs fetched different names\n");
    co_return 1;
  }
  std::printf("both runs fetched the same %d names\n", requests);
  co_return 0;
}

} // namespace

int main(int argc, char** argv) {
  const int requests = argc > 1 ? std::atoi(argv[1]) : 50;
  if (requests < 3) {
    std::fprintf(stderr, "usage: %s [REQUESTS >= 3]\n", argv[0]);
    return 2;
  }
  return simul::run(client(requests));
}
