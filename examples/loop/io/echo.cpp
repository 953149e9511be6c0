// io_echo: an echo server and three clients on one event loop.
//
// The server runs a handler task per connection; each client sends a few
// lines and reads them back; then the main task closes the server and waits
// for its handlers to finish.
//
//   main     ──start_server(port 0)──▶ gather(client A, B, C) ──close──▶ wait_closed
//   server   ──accept──▶ handler A: readline ▶ write ▶ drain ▶ … ▶ EOF ▶ close
//                        handler B, handler C alike, interleaved
//   client A ──open_connection──▶ write "A1" ▶ readline ▶ write "A2" ▶ … ▶ close
//
// Output:
//   server listening on 127.0.0.1:<port>
//   client A got: A1 A2 A3
//   client B got: B1 B2 B3
//   client C got: C1 C2 C3
//   server handled 3 connections, 9 lines
//   connecting to the closed server: connection refused (ECONNREFUSED)

#include <simul/loop.hpp>

#include <iostream>
#include <string>

namespace {

int g_lines = 0;
int g_connections = 0;

simul::task<void> echo(simul::stream_reader reader, simul::stream_writer writer) {
  ++g_connections;
  while (true) {
    std::string line = co_await reader.readline();
    if (line.empty()) { // EOF: the client closed its side
      break;
    }
    ++g_lines;
    writer.write(line);
    co_await writer.drain(); // waits only if the client reads slowly
  }
  writer.close();
  co_await writer.wait_closed();
}

simul::task<std::string> client(std::string name, int port) {
  auto [reader, writer] = co_await simul::open_connection("127.0.0.1", port);
  std::string got;
  for (int i = 1; i <= 3; ++i) {
    writer.write(name + std::to_string(i) + "\n");
    std::string echoed = co_await reader.readline();
    got += ' ';
    got.append(echoed, 0, echoed.size() - 1); // without the newline
  }
  writer.close();
  co_await writer.wait_closed();
  co_return "client " + name + " got:" + got;
}

simul::task<void> main_task() {
  auto server = co_await simul::start_server(echo, "127.0.0.1", 0);
  std::cout << "server listening on 127.0.0.1:" << server.port() << "\n";
  auto [a, b, c] =
      co_await simul::gather(client("A", server.port()), client("B", server.port()), client("C", server.port()));
  std::cout << a << "\n" << b << "\n" << c << "\n";
  const int port = server.port();
  server.close();
  co_await server.wait_closed();
  std::cout << "server handled " << g_connections << " connections, " << g_lines << " lines\n";
  try {
    co_await simul::open_connection("127.0.0.1", port);
  } catch (const simul::connection_error& e) {
    const std::string text = e.what();
    std::cout << "connecting to the closed server:" << text.substr(text.find(':', text.find(':') + 1) + 1) << "\n";
  }
}

} // namespace

int main() {
  simul::run(main_task());
  return 0;
}
