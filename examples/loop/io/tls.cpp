// io_tls: an echo server over TLS, a client that trusts its certificate,
// and one that does not (asyncio's ssl= on start_server / open_connection).
//
// The server loads a certificate chain and key; the first client trusts that
// certificate and checks that it is for "localhost"; the second trusts only
// the system's authorities, so its handshake fails with
// ssl_certificate_error, and the server drops it without running a handler.
//
//   server   ──start_server(ssl = server context)──▶ handshake ▶ handler: echo lines
//   client 1 ──open_connection(ssl = trusts the certificate)──▶ write ▶ readline ▶ close
//   client 2 ──open_connection(ssl = system authorities only)──▶ ssl_certificate_error
//
// Output:
//   client 1 over TLSv1.3 to O=simul test certificate,CN=localhost: hello over TLS
//   client 2 refused the server: certificate verify failed: self-signed certificate
//   server: 1 connection served, 1 handshake failed
//
// Run it with the directory holding localhost.pem and localhost.key (by
// default the repository's data/tls, whose key is public: a demo only).

#include <simul/loop.hpp>

#include <iostream>
#include <string>

namespace {

int g_served = 0;

simul::task<void> echo(simul::stream_reader reader, simul::stream_writer writer) {
  ++g_served;
  while (true) {
    std::string line = co_await reader.readline();
    if (line.empty()) {
      break;
    }
    writer.write(line);
    co_await writer.drain();
  }
  writer.close();
}

simul::task<void> main_task(std::string certs) {
  auto server_tls = simul::ssl_context::server();
  server_tls.load_cert_chain(certs + "/localhost.pem", certs + "/localhost.key");
  simul::server_options server_options{.ssl = &server_tls};
  auto srv = co_await simul::start_server(echo, "127.0.0.1", 0, server_options);

  // Client 1 trusts the server's certificate and checks it names "localhost".
  auto trusting = simul::ssl_context::client();
  trusting.load_verify_locations(certs + "/localhost.pem");
  simul::connection_options options1{.ssl = &trusting, .server_hostname = "localhost"};
  auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), options1);
  writer.write("hello over TLS\n");
  const std::string answer = co_await reader.readline();
  std::cout << "client 1 over " << writer.get_extra_info("ssl_version") << " to " << writer.get_extra_info("peercert")
            << ": " << answer;
  writer.close();
  co_await writer.wait_closed();

  // Client 2 trusts only the system's authorities.
  auto system_only = simul::ssl_context::client();
  simul::connection_options options2{.ssl = &system_only, .server_hostname = "localhost"};
  try {
    (void)co_await simul::open_connection("127.0.0.1", srv.port(), options2);
  } catch (const simul::ssl_certificate_error& e) {
    std::cout << "client 2 refused the server: certificate verify failed: " << e.reason() << "\n";
  }

  while (srv.handshake_failures() == 0) { // the server learns of it from client 2's alert
    co_await simul::sleep(std::chrono::milliseconds(1));
  }
  srv.close();
  co_await srv.wait_closed();
  std::cout << "server: " << g_served << " connection served, " << srv.handshake_failures() << " handshake failed\n";
}

} // namespace

int main(int argc, char** argv) {
  const std::string certs = argc > 1 ? argv[1] : SIMUL_TLS_DATA_DIR;
  try {
    simul::run(main_task(certs));
  } catch (const std::exception& e) {
    std::cerr << "io_tls: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
