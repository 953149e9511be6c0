// io_loop_per_thread: one event loop per core, all serving one port.
//
// A loop runs on one thread. To use every core, a server runs a loop on each
// of several threads, and each loop listens on the same port with
// `reuse_port`: the kernel spreads new connections over the listeners. The
// first server picks the port; the others join it. The main thread runs a
// loop of its own for the clients, and stops the servers by asking each
// server's loop to close its server (`call_soon_threadsafe`, the one loop
// call any thread may make).
//
//   thread 0  loop ── start_server(port 0, reuse_port) ── serve_forever ──┐
//   thread 1  loop ── start_server(same port, reuse_port) ── serve_forever ┤
//   main      loop ── gather(100 clients per loop): "who?" ▶ "loop <i>" ──┴─ close each
//
// Output:
//   2 loops on 2 threads share port <port>
//   200 connections answered
//   every loop served some: yes

#include <simul/loop.hpp>

#include <algorithm>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {

/// What a server thread tells the main thread once it listens.
struct serving {
  simul::event_loop* loop;
  simul::server* server;
  int port;
};

simul::connection_handler answer_as(unsigned index) {
  return [index](simul::stream_reader reader, simul::stream_writer writer) -> simul::task<void> {
    (void)co_await reader.readline();
    writer.write("loop " + std::to_string(index) + "\n");
    writer.close();
    co_await writer.wait_closed();
  };
}

simul::task<void> serve(unsigned index, int port, simul::event_loop* loop, simul::promise<serving> started) {
  auto srv = co_await simul::start_server(answer_as(index), "127.0.0.1", port, {.reuse_port = true});
  started.set_value({loop, &srv, srv.port()});
  co_await srv.serve_forever(); // until the main thread closes the server
}

void server_thread(unsigned index, int port, simul::promise<serving> started) {
  simul::event_loop loop;
  loop.run_until_complete(serve(index, port, &loop, std::move(started)));
  loop.close();
}

simul::task<std::string> ask(int port) {
  auto [reader, writer] = co_await simul::open_connection("127.0.0.1", port);
  writer.write("who?\n");
  auto answer = co_await reader.readline();
  writer.close();
  co_await writer.wait_closed();
  co_return answer;
}

simul::task<std::vector<int>> clients(int port, unsigned loops, int count) {
  std::vector<simul::task<std::string>> asks;
  for (int i = 0; i < count; ++i) {
    asks.push_back(ask(port));
  }
  std::vector<int> served(loops);
  for (const auto& answer : co_await simul::gather(std::move(asks))) {
    ++served.at(std::stoul(answer.substr(answer.find(' ') + 1)));
  }
  co_return served;
}

} // namespace

int main() {
  const unsigned loops = std::max(2U, std::thread::hardware_concurrency());
  std::vector<std::thread> threads;
  std::vector<serving> servers;
  int port = 0;
  for (unsigned i = 0; i < loops; ++i) {
    simul::promise<serving> started;
    auto listening = started.get_future();
    threads.emplace_back(server_thread, i, port, std::move(started));
    servers.push_back(listening.get()); // rethrows if the server could not start
    port = servers.back().port;
  }
  std::cout << loops << " loops on " << loops << " threads share port " << port << "\n";

  // 100 connections per loop: the chance that the kernel leaves one loop
  // out is below loops * e^-100.
  const int count = 100 * static_cast<int>(loops);
  const auto served = simul::run(clients(port, loops, count));
  int answered = 0;
  for (int n : served) {
    answered += n;
  }
  std::cout << answered << " connections answered\n";
  const bool all = std::ranges::all_of(served, [](int n) { return n > 0; });
  std::cout << "every loop served some: " << (all ? "yes" : "no") << "\n";

  for (const auto& s : servers) {
    s.loop->call_soon_threadsafe([srv = s.server] { srv->close(); });
  }
  for (auto& t : threads) {
    t.join();
  }
  return all && answered == count ? 0 : 1;
}
