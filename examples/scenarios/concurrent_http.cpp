// concurrent_http: fetch names from a small JSON API, one after another and
// then all at once — the "concurrent HTTP requests" case of the notes, with
// simul::http (libcurl on the loop) as the client.
//
// A tiny HTTP/1.1 server on the loop's streams (loopback only, keep-alive)
// serves GET /names/<id> as {"id": <id>, "name": "..."}; every answer takes
// 10 ms, as a real service's database lookup would. The client fetches N
// random ids:
//
//   one after another      GET 17 ──10ms──▶ GET 4 ──10ms──▶ GET 33 ...   ≈ N × 10 ms
//   concurrently, at most  GET 17 ──10ms──▶
//   10 in flight           GET 4  ──10ms──▶                              ≈ N / 10 × 10 ms
//   (a semaphore)          GET 33 ──10ms──▶
//
// It prints both times and checks that both runs fetched the same names.

#include <simul/http.hpp>
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

/// Answers one request: the headers are skipped (every request is a GET).
simul::task<void> answer(const std::string& request_line, simul::stream_reader& reader, simul::stream_writer& writer) {
  while ((co_await reader.readline()) != "\r\n") {
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
               std::to_string(body.size()) + "\r\n\r\n" + body);
  co_await writer.drain();
}

/// Serves one connection: a JSON answer per request, until the client hangs up.
simul::task<void> serve(simul::stream_reader reader, simul::stream_writer writer) {
  for (std::string request_line = co_await reader.readline(); !request_line.empty();
       request_line = co_await reader.readline()) {
    co_await answer(request_line, reader, writer);
  }
  writer.close();
  co_await writer.wait_closed();
}

/// GET /names/<id>; returns the name from the JSON body.
simul::task<std::string> fetch_name(simul::http::client& http, std::string base, int id) {
  auto r = co_await http.get(base + "/names/" + std::to_string(id));
  r.raise_for_status(); // a 404 or 500 is an error here
  const auto start = r.body.find("\"name\": \"") + 9;
  co_return r.body.substr(start, r.body.find('"', start) - start);
}

/// fetch_name with at most `limit`'s count in flight.
simul::task<std::string> fetch_bounded(simul::semaphore& limit, simul::http::client& http, std::string base, int id) {
  co_await limit.acquire();
  try {
    std::string name = co_await fetch_name(http, base, id);
    limit.release();
    co_return name;
  } catch (...) {
    limit.release();
    throw;
  }
}

simul::task<int> client(int requests) {
  auto server = co_await simul::start_server(serve, "127.0.0.1", 0);
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port());
  std::printf("serving on %s\n", base.c_str());

  std::mt19937 random(2024);
  std::vector<int> ids;
  for (int i = 0; i < requests; ++i) {
    ids.push_back(static_cast<int>(random() % 1000));
  }

  std::vector<std::string> one_by_one;
  std::vector<std::string> together;
  double sequential = 0;
  double concurrent = 0;
  {
    // One client: its connections are kept alive and reused between requests.
    simul::http::client http({.max_connections = 10});
    auto start = clock_type::now();
    for (int id : ids) {
      one_by_one.push_back(co_await fetch_name(http, base, id));
    }
    sequential = std::chrono::duration<double>(clock_type::now() - start).count();

    start = clock_type::now();
    simul::semaphore limit(10);
    std::vector<simul::task<std::string>> fetches;
    for (int id : ids) {
      fetches.push_back(fetch_bounded(limit, http, base, id));
    }
    together = co_await simul::gather(std::move(fetches));
    concurrent = std::chrono::duration<double>(clock_type::now() - start).count();
  } // the client closes its connections: the server's handlers end

  server.close();
  co_await server.wait_closed();

  std::printf("first names: %s, %s, %s\n", together[0].c_str(), together[1].c_str(), together[2].c_str());
  std::printf("one after another:        %d requests in %.3f s\n", requests, sequential);
  std::printf("concurrently (10 at most): %d requests in %.3f s (%.1fx)\n", requests, concurrent,
              sequential / concurrent);
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
