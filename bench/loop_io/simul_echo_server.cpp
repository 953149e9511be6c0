// The simul side of L4: start_server + stream_reader/stream_writer, over TCP
// or TLS.

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
  } catch (const simul::io_error&) {
    // the load client resets its connections when a run ends
  }
}

simul::task<void> serve(bool tls) {
  auto context = simul::ssl_context::server();
  if (tls) {
    context.load_cert_chain(SIMUL_TLS_DATA_DIR "/localhost.pem", SIMUL_TLS_DATA_DIR "/localhost.key");
  }
  simul::server_options options{.ssl = tls ? &context : nullptr};
  auto server = co_await simul::start_server(echo, "127.0.0.1", 0, options);
  std::printf("PORT %d\n", server.port());
  std::fflush(stdout);
  co_await server.serve_forever();
}

} // namespace

int serve_simul(bool tls) {
  simul::run(serve(tls));
  return 0;
}
