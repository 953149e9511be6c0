// The simul side of L4: start_server + stream_reader/stream_writer.

#include "servers.hpp"

#include <simul/loop.hpp>

#include <cstdio>

namespace {

simul::task<void> echo(simul::stream_reader reader, simul::stream_writer writer) {
  try {
    while (true) {
      std::string data = co_await reader.read(64 * 1024);
      if (data.empty()) {
        break;
      }
      writer.write(data);
      co_await writer.drain();
    }
  } catch (const simul::connection_error&) {
    // the load client resets its connections when a run ends
  }
}

simul::task<void> serve() {
  auto server = co_await simul::start_server(echo, "127.0.0.1", 0);
  std::printf("PORT %d\n", server.port());
  std::fflush(stdout);
  co_await server.serve_forever();
}

} // namespace

int serve_simul() {
  simul::run(serve());
  return 0;
}
