// TLS streams: handshakes that succeed and fail, verification, mutual TLS,
// timeouts, close_notify, big transfers, and the context's errors.

#include "co_assert.hpp"
#include "io_test_util.hpp"

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using simul::ssl_context;
using simul::stream_reader;
using simul::stream_writer;
using simul::task;
using simul::test::echo_lines;
using simul::test::open_fd_count;
using simul::test::send_and_close;
using simul::test::send_and_expect;
using simul::test::until;

namespace {

const std::string k_cert = SIMUL_TLS_DATA_DIR "/localhost.pem";
const std::string k_key = SIMUL_TLS_DATA_DIR "/localhost.key";
const std::string k_other_cert = SIMUL_TLS_DATA_DIR "/other.pem"; // for other.test
const std::string k_other_key = SIMUL_TLS_DATA_DIR "/other.key";

ssl_context server_context() {
  auto ctx = ssl_context::server();
  ctx.load_cert_chain(k_cert, k_key);
  return ctx;
}

/// A client context that trusts the test certificate (and checks the name).
ssl_context trusting_client() {
  auto ctx = ssl_context::client();
  ctx.load_verify_locations(k_cert);
  return ctx;
}

/// One such context, shared by the tests that change nothing in it.
const ssl_context& trusted() {
  static const ssl_context ctx = trusting_client();
  return ctx;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream all;
  all << in.rdbuf();
  return all.str();
}

/// A plain TCP server that reads until EOF and never writes.
task<void> silent(stream_reader reader, stream_writer) {
  try {
    (void)co_await reader.read();
  } catch (const simul::connection_error&) {
    // a client that gave up resets the connection
  }
}

} // namespace

TEST(LoopTls, EchoOverTlsAndTheSessionsDetails) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    std::string server_saw_cert = "unset";
    std::string server_version;
    auto handler = [&](stream_reader r, stream_writer w) -> task<void> {
      server_saw_cert = w.get_extra_info("peercert");
      server_version = w.get_extra_info("ssl_version");
      co_await echo_lines(std::move(r), std::move(w));
    };
    const auto tls = server_context();
    simul::server_options sopts{.ssl = &tls};
    auto srv = co_await simul::start_server(handler, "127.0.0.1", 0, sopts);
    simul::connection_options copts{.ssl = &trusted(), .server_hostname = "localhost"};
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), copts);
    for (int i = 0; i < 20; ++i) {
      const auto line = "line " + std::to_string(i) + "\n";
      writer.write(line);
      EXPECT_EQ(co_await reader.readline(), line);
    }
    EXPECT_EQ(writer.get_extra_info("ssl_version").rfind("TLSv1.", 0), 0u) << writer.get_extra_info("ssl_version");
    EXPECT_FALSE(writer.get_extra_info("cipher").empty());
    EXPECT_NE(writer.get_extra_info("peercert").find("CN=localhost"), std::string::npos)
        << writer.get_extra_info("peercert");
    EXPECT_EQ(writer.get_extra_info("peername"), "127.0.0.1:" + std::to_string(srv.port()));
    EXPECT_EQ(server_saw_cert, ""); // the client sent no certificate
    EXPECT_EQ(server_version, writer.get_extra_info("ssl_version"));
    EXPECT_FALSE(writer.can_write_eof());
    EXPECT_THROW(writer.write_eof(), simul::error);
    writer.write("still open\n"); // a refused write_eof changes nothing
    EXPECT_EQ(co_await reader.readline(), "still open\n");
    writer.close();
    co_await writer.wait_closed();
    srv.close();
    co_await srv.wait_closed();
    EXPECT_EQ(srv.handshake_failures(), 0u);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopTls, TheHostNameIsCheckedByDefaultAndAnIpAddressToo) {
  simul::run([]() -> task<void> {
    const auto tls = server_context();
    simul::server_options sopts{.ssl = &tls};
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0, sopts);
    // The certificate names 127.0.0.1: connecting by address alone checks that.
    simul::connection_options by_ip{.ssl = &trusted()};
    auto [r1, w1] = co_await simul::open_connection("127.0.0.1", srv.port(), by_ip);
    co_await send_and_expect(r1, w1, "ip\n");
    w1.close();
    // A name the certificate does not carry is refused.
    simul::connection_options wrong{.ssl = &trusted(), .server_hostname = "example.org"};
    try {
      (void)co_await simul::open_connection("127.0.0.1", srv.port(), wrong);
      ADD_FAILURE() << "a certificate for another name was accepted";
    } catch (const simul::ssl_certificate_error& e) {
      EXPECT_NE(std::string(e.what()).find("hostname mismatch"), std::string::npos) << e.what();
      EXPECT_NE(e.verify_code(), 0);
      EXPECT_EQ(e.address(), "127.0.0.1:" + std::to_string(srv.port()));
    }
    // Without the name check, the same connection is accepted.
    auto lax = trusting_client();
    lax.set_check_hostname(false);
    EXPECT_EQ(lax.verify_mode(), simul::ssl_verify::required);
    simul::connection_options unchecked{.ssl = &lax, .server_hostname = "example.org"};
    auto [r2, w2] = co_await simul::open_connection("127.0.0.1", srv.port(), unchecked);
    co_await send_and_expect(r2, w2, "lax\n");
    w2.close();
    co_await until([&] { return srv.active_connections() == 0; });
    srv.close();
  }());
}

TEST(LoopTls, AnUntrustedCertificateFailsTheHandshakeOnBothSides) {
  simul::run([]() -> task<void> {
    const auto tls = server_context();
    simul::server_options sopts{.ssl = &tls};
    bool handler_ran = false;
    auto handler = [&](stream_reader, stream_writer) -> task<void> {
      handler_ran = true;
      co_return;
    };
    auto srv = co_await simul::start_server(handler, "127.0.0.1", 0, sopts);
    // The system's authorities do not include the test certificate.
    const auto system_only = ssl_context::client();
    simul::connection_options copts{.ssl = &system_only, .server_hostname = "localhost"};
    EXPECT_THROW((void)co_await simul::open_connection("127.0.0.1", srv.port(), copts), simul::ssl_certificate_error);
    // The client's alert fails the server's side, which drops it quietly and counts it.
    co_await until([&] { return srv.handshake_failures() == 1; });
    EXPECT_FALSE(handler_ran);
    // Without verification the same server is reachable.
    auto blind = ssl_context::client();
    blind.set_check_hostname(false);
    blind.set_verify_mode(simul::ssl_verify::none);
    simul::connection_options no_verify{.ssl = &blind};
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), no_verify);
    EXPECT_NE(writer.get_extra_info("peercert").find("CN=localhost"), std::string::npos);
    co_await until([&] { return handler_ran; });
    EXPECT_EQ(co_await reader.read(), ""); // the handler ended: the server closed with close_notify
    srv.close();
  }());
}

TEST(LoopTls, APlainClientIsDroppedAndTheServerGoesOn) {
  simul::run([]() -> task<void> {
    const auto tls = server_context();
    simul::server_options sopts{.ssl = &tls};
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0, sopts);
    {
      auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
      writer.write("GET / HTTP/1.0\r\n\r\n");
      // The server answers with an alert (or nothing) and closes.
      std::string got;
      try {
        got = co_await reader.read();
      } catch (const simul::connection_error&) {
      }
      EXPECT_EQ(got.find("GET"), std::string::npos);
    }
    co_await until([&] { return srv.handshake_failures() == 1; });
    simul::connection_options copts{.ssl = &trusted(), .server_hostname = "localhost"};
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), copts);
    co_await send_and_expect(reader, writer, "after\n");
    writer.close();
    co_await until([&] { return srv.active_connections() == 0; });
    srv.close();
  }());
}

TEST(LoopTls, ATlsClientOfAPlainServerGetsAnSslError) {
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(send_and_close("HTTP/1.1 400 Bad Request\r\n\r\n"), "127.0.0.1", 0);
    simul::connection_options copts{.ssl = &trusted(), .server_hostname = "localhost"};
    try {
      (void)co_await simul::open_connection("127.0.0.1", srv.port(), copts);
      ADD_FAILURE() << "a plain server passed for TLS";
    } catch (const simul::ssl_error& e) {
      EXPECT_EQ(e.code(), EPROTO);
      EXPECT_FALSE(e.reason().empty());
      EXPECT_NE(std::string(e.what()).find("TLS handshake with 127.0.0.1:"), std::string::npos) << e.what();
    }
    srv.close();
  }());
}

TEST(LoopTls, HandshakeTimeoutsOnBothSides) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    // A client whose server never speaks.
    auto mute = co_await simul::start_server(silent, "127.0.0.1", 0);
    simul::connection_options copts{.ssl = &trusted(), .server_hostname = "localhost", .ssl_handshake_timeout = 50ms};
    try {
      (void)co_await simul::open_connection("127.0.0.1", mute.port(), copts);
      ADD_FAILURE() << "the handshake did not time out";
    } catch (const simul::timeout_error& e) {
      EXPECT_NE(std::string(e.what()).find("TLS handshake with 127.0.0.1:"), std::string::npos) << e.what();
    }
    mute.close();
    co_await mute.wait_closed();
    // A server whose client never speaks: dropped after its timeout.
    const auto tls = server_context();
    simul::server_options sopts{.ssl = &tls, .ssl_handshake_timeout = 50ms};
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0, sopts);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    try {
      EXPECT_EQ(co_await reader.read(), "");
    } catch (const simul::connection_error&) {
      // the server aborts the connection: a reset is as good as an EOF here
    }
    EXPECT_EQ(srv.handshake_failures(), 1u);
    writer.close();
    srv.close();
    co_await srv.wait_closed();
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopTls, CancellingAHandshakeLeavesNothingBehind) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    auto mute = co_await simul::start_server(silent, "127.0.0.1", 0);
    simul::connection_options copts{.ssl = &trusted(), .server_hostname = "localhost"};
    auto connecting = simul::create_task(simul::open_connection("127.0.0.1", mute.port(), copts));
    co_await until([&] { return mute.active_connections() == 1; });
    connecting.cancel();
    EXPECT_THROW((void)co_await connecting, simul::cancelled_error);
    co_await until([&] { return mute.active_connections() == 0; }); // our side closed
    mute.close();
    co_await mute.wait_closed();
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopTls, MutualTlsRequiresAndShowsTheClientsCertificate) {
  simul::run([]() -> task<void> {
    auto strict = server_context();
    strict.set_verify_mode(simul::ssl_verify::required);
    strict.load_verify_locations(k_cert);
    std::string client_subject;
    auto handler = [&](stream_reader r, stream_writer w) -> task<void> {
      client_subject = w.get_extra_info("peercert");
      co_await echo_lines(std::move(r), std::move(w));
    };
    simul::server_options sopts{.ssl = &strict};
    auto srv = co_await simul::start_server(handler, "127.0.0.1", 0, sopts);
    // Without a certificate: refused. With TLS 1.3 the client's handshake
    // ends before the server has checked it, so the refusal may only show
    // on the first read.
    simul::connection_options anonymous{.ssl = &trusted()};
    bool refused = false;
    try {
      auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), anonymous);
      writer.write("hello\n");
      (void)co_await reader.readline();
    } catch (const simul::ssl_error& e) {
      refused = true;
      EXPECT_NE(std::string(e.what()).find("certificate"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(refused);
    co_await until([&] { return srv.handshake_failures() == 1; });
    // With the certificate: served, and the handler sees who it is.
    auto known = trusting_client();
    known.load_cert_chain(k_cert, k_key);
    simul::connection_options with_cert{.ssl = &known};
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), with_cert);
    co_await send_and_expect(reader, writer, "hello\n");
    EXPECT_NE(client_subject.find("CN=localhost"), std::string::npos) << client_subject;
    writer.close();
    co_await until([&] { return srv.active_connections() == 0; });
    srv.close();
  }());
}

TEST(LoopTls, BigTransfersBothWaysWithFlowControl) {
  simul::run([]() -> task<void> {
    // The server sends back everything it reads, in pieces, draining as it goes.
    auto copy_back = [](stream_reader r, stream_writer w) -> task<void> {
      while (true) {
        auto chunk = co_await r.read(100'000);
        if (chunk.empty()) {
          break;
        }
        w.write(chunk);
        co_await w.drain();
      }
      w.close();
    };
    const auto tls = server_context();
    simul::server_options sopts{.limit = 16 * 1024, .ssl = &tls};
    auto srv = co_await simul::start_server(copy_back, "127.0.0.1", 0, sopts);
    simul::connection_options copts{.ssl = &trusted(), .server_hostname = "localhost"};
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), copts);
    std::string sent(6 * 1024 * 1024, '\0');
    for (std::size_t i = 0; i < sent.size(); ++i) {
      sent[i] = static_cast<char>((i * 7919) % 251);
    }
    auto sending = simul::create_task([](stream_writer w, const std::string& data) -> task<void> {
      for (std::size_t at = 0; at < data.size(); at += 256 * 1024) {
        w.write(std::string_view(data).substr(at, 256 * 1024));
        co_await w.drain();
      }
    }(writer, sent));
    auto got = co_await reader.readexactly(sent.size());
    co_await sending;
    EXPECT_TRUE(got == sent);
    writer.close();
    EXPECT_EQ(co_await reader.read(), ""); // the server's close_notify after ours
    srv.close();
  }());
}

TEST(LoopTls, ManyConcurrentConnections) {
  simul::run([]() -> task<void> {
    const auto tls = server_context();
    simul::server_options sopts{.ssl = &tls};
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0, sopts);
    const auto& client_ctx = trusted(); // one context shared by every connection
    std::vector<simul::task_handle<int>> clients;
    for (int c = 0; c < 24; ++c) {
      clients.push_back(simul::create_task([](int port, ssl_context ctx, int id) -> task<int> {
        simul::connection_options copts{.ssl = &ctx, .server_hostname = "localhost"};
        auto [reader, writer] = co_await simul::open_connection("127.0.0.1", port, copts);
        int echoed = 0;
        for (int i = 0; i < 10; ++i) {
          const auto line = std::to_string(id) + ":" + std::to_string(i) + "\n";
          writer.write(line);
          echoed += (co_await reader.readline() == line) ? 1 : 0;
        }
        writer.close();
        co_return echoed;
      }(srv.port(), client_ctx, c)));
    }
    int total = 0;
    for (auto& c : clients) {
      total += co_await c;
    }
    EXPECT_EQ(total, 24 * 10);
    co_await until([&] { return srv.active_connections() == 0; });
    EXPECT_EQ(srv.handshake_failures(), 0u);
    srv.close();
  }());
}

TEST(LoopTls, UnixSocketsNeedAServerHostnameToCheck) {
  const auto path = simul::test::temp_socket_path("tls");
  simul::run([&]() -> task<void> {
    const auto tls = server_context();
    simul::server_options sopts{.ssl = &tls};
    auto srv = co_await simul::start_unix_server(echo_lines, path, sopts);
    simul::connection_options nameless{.ssl = &trusted()};
    EXPECT_THROW((void)co_await simul::open_unix_connection(path, nameless), simul::error);
    EXPECT_EQ(srv.active_connections(), 0u); // refused before connecting
    simul::connection_options named{.ssl = &trusted(), .server_hostname = "localhost"};
    auto [reader, writer] = co_await simul::open_unix_connection(path, named);
    co_await send_and_expect(reader, writer, "unix\n");
    writer.close();
    co_await until([&] { return srv.active_connections() == 0; });
    srv.close();
    co_await srv.wait_closed();
  }());
}

TEST(LoopTls, ContextsRefuseWhatCannotWork) {
  // Files: missing, not PEM, a key for another certificate.
  auto ctx = ssl_context::server();
  try {
    ctx.load_cert_chain("/nonexistent/cert.pem");
    ADD_FAILURE() << "a missing file was accepted";
  } catch (const simul::io_error& e) {
    EXPECT_EQ(e.code(), ENOENT);
    EXPECT_EQ(e.address(), "/nonexistent/cert.pem");
  }
  EXPECT_THROW(ctx.load_cert_chain(SIMUL_TLS_DATA_DIR "/README.md"), simul::ssl_error);
  try {
    ctx.load_cert_chain(k_cert, SIMUL_TLS_DATA_DIR "/other.key");
    ADD_FAILURE() << "a key for another certificate was accepted";
  } catch (const simul::ssl_error& e) {
    EXPECT_NE(std::string(e.what()).find("key values mismatch"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ctx.load_verify_locations("/nonexistent/ca.pem"), simul::io_error);
  EXPECT_THROW(ctx.load_verify_data("not a certificate"), simul::ssl_error);
  // Verification settings: Python's rules.
  auto client = ssl_context::client();
  EXPECT_FALSE(client.is_server());
  EXPECT_TRUE(client.check_hostname());
  EXPECT_THROW(client.set_verify_mode(simul::ssl_verify::none), simul::error);
  client.set_check_hostname(false);
  client.set_verify_mode(simul::ssl_verify::none);
  client.set_check_hostname(true);
  EXPECT_EQ(client.verify_mode(), simul::ssl_verify::required);
  EXPECT_NE(client.native_handle(), nullptr);

  simul::run([]() -> task<void> {
    // The wrong side's context is refused before anything starts.
    const auto wrong_client = ssl_context::client();
    simul::server_options client_side{.ssl = &wrong_client};
    EXPECT_THROW((void)co_await simul::start_server(echo_lines, "127.0.0.1", 0, client_side), simul::error);
    const auto wrong_server = ssl_context::server();
    simul::connection_options server_side{.ssl = &wrong_server};
    EXPECT_THROW((void)co_await simul::open_connection("127.0.0.1", 9, server_side), simul::error);
    // The test certificate given as data (Python's cadata) is trusted like the file.
    auto from_data = ssl_context::client();
    from_data.load_verify_data(read_text(k_cert));
    const auto tls = server_context();
    simul::server_options sopts{.ssl = &tls};
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0, sopts);
    simul::connection_options copts{.ssl = &from_data, .server_hostname = "localhost"};
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), copts);
    co_await send_and_expect(reader, writer, "data\n");
    writer.close();
    co_await until([&] { return srv.active_connections() == 0; });
    srv.close();
  }());
}

TEST(LoopTls, AnAdoptedSocketSpeaksTlsToo) {
  simul::run([]() -> task<void> {
    const auto tls = server_context();
    simul::server_options sopts{.ssl = &tls};
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0, sopts);
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CO_ASSERT_TRUE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(srv.port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CO_ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    // No name to check: refused before the socket is taken, which stays the caller's.
    simul::connection_options nameless{.ssl = &trusted()};
    EXPECT_THROW((void)co_await simul::open_connection(simul::socket_fd{fd}, nameless), simul::error);
    EXPECT_NE(::fcntl(fd, F_GETFD), -1);
    simul::connection_options named{.ssl = &trusted(), .server_hostname = "localhost"};
    auto [reader, writer] = co_await simul::open_connection(simul::socket_fd{fd}, named);
    co_await send_and_expect(reader, writer, "adopted\n");
    writer.close();
    co_await until([&] { return srv.active_connections() == 0; });
    srv.close();
  }());
}

TEST(LoopTls, StartTlsUpgradesAPlainConnection) {
  simul::run([]() -> task<void> {
    const auto tls = server_context();
    // A STARTTLS server: plain lines until "STARTTLS", then TLS on the same connection.
    auto handler = [&tls](stream_reader r, stream_writer w) -> task<void> {
      EXPECT_EQ(co_await r.readline(), "HELLO\n");
      w.write("WELCOME\n");
      // Let the client's TLS hello, sent right after its line, arrive before
      // the line is read: it is buffered as plaintext, and start_tls must
      // hand it to TLS.
      co_await simul::sleep(20ms);
      EXPECT_EQ(co_await r.readline(), "STARTTLS\n");
      co_await w.start_tls(tls, {}, 5s);
      EXPECT_FALSE(w.get_extra_info("ssl_version").empty());
      co_await echo_lines(std::move(r), std::move(w));
    };
    // A small limit: the buffered hello alone passes twice the limit, so flow
    // control has paused reading when the upgrade starts.
    simul::server_options small{.limit = 64};
    auto srv = co_await simul::start_server(handler, "127.0.0.1", 0, small);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    EXPECT_TRUE(writer.can_write_eof());
    writer.write("HELLO\n");
    EXPECT_EQ(co_await reader.readline(), "WELCOME\n");
    writer.write("STARTTLS\n");
    co_await writer.start_tls(trusted(), "localhost", 5s);
    EXPECT_EQ(writer.get_extra_info("ssl_version").rfind("TLSv1.", 0), 0u);
    EXPECT_NE(writer.get_extra_info("peercert").find("CN=localhost"), std::string::npos);
    EXPECT_FALSE(writer.can_write_eof());
    co_await send_and_expect(reader, writer, "secret\n");
    EXPECT_THROW(co_await writer.start_tls(trusted(), "localhost"), simul::error); // already TLS
    writer.close();
    co_await until([&] { return srv.active_connections() == 0; });
    EXPECT_THROW(co_await writer.start_tls(trusted(), "localhost"), simul::connection_error); // closed
    srv.close();
  }());
}

TEST(LoopTls, AFailedStartTlsClosesTheConnection) {
  simul::run([]() -> task<void> {
    // A server that answers STARTTLS in plain text and hangs up.
    auto refuse = [](stream_reader r, stream_writer w) -> task<void> {
      (void)co_await r.readline();
      w.write("502 not upgrading\r\n");
      w.close();
    };
    auto srv = co_await simul::start_server(refuse, "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    writer.write("STARTTLS\n");
    EXPECT_THROW(co_await writer.start_tls(trusted(), "localhost", 5s), simul::io_error);
    EXPECT_TRUE(writer.is_closing());
    EXPECT_THROW(co_await writer.wait_closed(), simul::io_error); // closed by that failure
    // No name for a context that checks names; and no upgrade after write_eof().
    auto [r2, w2] = co_await simul::open_connection("127.0.0.1", srv.port());
    EXPECT_THROW(co_await w2.start_tls(trusted()), simul::error);
    w2.write_eof();
    EXPECT_THROW(co_await w2.start_tls(trusted(), "localhost"), simul::error);
    EXPECT_FALSE(w2.is_closing()); // refusals change nothing
    w2.close();
    co_await until([&] { return srv.active_connections() == 0; });
    srv.close();
  }());
}

namespace {

/// Copies `from` to `to` until EOF, then closes `to`; while `*flip` is set,
/// the next chunk has one bit of its last byte flipped (and `*flip` clears).
task<void> pump(stream_reader from, stream_writer to, bool* flip) {
  try {
    for (auto chunk = co_await from.read(64 * 1024); !chunk.empty(); chunk = co_await from.read(64 * 1024)) {
      if (flip != nullptr && *flip) {
        chunk.back() = static_cast<char>(chunk.back() ^ 1);
        *flip = false;
      }
      to.write(chunk);
      co_await to.drain();
    }
  } catch (const simul::connection_error&) {
    // the other side broke off: close this one too
  }
  to.close();
}

} // namespace

TEST(LoopTls, ACorruptRecordIsAnSslErrorThatBreaksTheStream) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    const auto tls = server_context();
    simul::server_options sopts{.ssl = &tls};
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0, sopts);
    // A plain proxy in between, which can damage what the server sends.
    bool corrupt = false;
    const int upstream = srv.port();
    auto relay = [&corrupt, upstream](stream_reader client_r, stream_writer client_w) -> task<void> {
      auto [up_r, up_w] = co_await simul::open_connection("127.0.0.1", upstream);
      auto to_server = simul::create_task(pump(client_r, up_w, nullptr));
      co_await pump(up_r, client_w, &corrupt);
      co_await to_server;
    };
    auto proxy = co_await simul::start_server(relay, "127.0.0.1", 0);
    simul::connection_options copts{.ssl = &trusted(), .server_hostname = "localhost"};
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", proxy.port(), copts);
    co_await send_and_expect(reader, writer, "intact\n");
    corrupt = true; // the echo of the next line arrives with its record's tag damaged
    writer.write("damaged\n");
    try {
      (void)co_await reader.readline();
      ADD_FAILURE() << "a damaged record must not be read as data";
    } catch (const simul::ssl_error& e) {
      EXPECT_EQ(e.code(), EPROTO);
      EXPECT_FALSE(e.reason().empty());
      EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(proxy.port())), std::string::npos) << e.what();
    }
    // The stream is broken for good: reading and writing fail, nothing hangs.
    EXPECT_THROW((void)co_await reader.readline(), simul::ssl_error);
    EXPECT_THROW(writer.write("more\n"), simul::error);
    writer.close();
    EXPECT_THROW(co_await writer.wait_closed(), simul::ssl_error);
    co_await until([&] { return srv.active_connections() == 0 && proxy.active_connections() == 0; });
    proxy.close();
    srv.close();
    co_await proxy.wait_closed();
    co_await srv.wait_closed();
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopTls, AlpnChoosesTheServersFirstProtocolThatTheClientOffers) {
  simul::run([]() -> task<void> {
    std::vector<std::string> server_saw;
    auto handler = [&server_saw](stream_reader r, stream_writer w) -> task<void> {
      server_saw.push_back(w.get_extra_info("alpn_protocol") + " for " + w.get_extra_info("server_name"));
      co_await echo_lines(std::move(r), std::move(w));
    };
    auto tls = server_context();
    tls.set_alpn_protocols({"http/1.1", "h2"});
    simul::server_options sopts{.ssl = &tls};
    auto srv = co_await simul::start_server(handler, "127.0.0.1", 0, sopts);
    // The client prefers h2, the server http/1.1: the server's order decides.
    // With nothing in common, or nothing offered, no protocol is chosen and
    // the connection works all the same.
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
        {{"h2", "http/1.1"}, "http/1.1"}, {{"h2"}, "h2"}, {{"spdy/3"}, ""}, {{}, ""}};
    for (const auto& [offered, expected] : cases) {
      auto client = trusting_client();
      client.set_alpn_protocols(offered);
      simul::connection_options copts{.ssl = &client, .server_hostname = "localhost"};
      auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), copts);
      EXPECT_EQ(writer.get_extra_info("alpn_protocol"), expected);
      EXPECT_EQ(writer.get_extra_info("server_name"), "localhost");
      co_await send_and_expect(reader, writer, "ping\n");
      EXPECT_EQ(server_saw.back(), expected + " for localhost");
      writer.close();
      co_await writer.wait_closed();
    }
    EXPECT_EQ(server_saw.size(), cases.size());
    // Names ALPN cannot carry.
    EXPECT_THROW(tls.set_alpn_protocols({"h2", ""}), simul::error);
    EXPECT_THROW(tls.set_alpn_protocols({std::string(256, 'x')}), simul::error);
    srv.close();
    co_await srv.wait_closed();
  }());
}

TEST(LoopTls, TheServerNameCallbackPicksACertificatePerName) {
  simul::run([]() -> task<void> {
    std::vector<std::string> reports;
    simul::get_running_loop().set_exception_handler([&reports](simul::event_loop&, const simul::exception_context& c) {
      std::string what;
      try {
        std::rethrow_exception(c.exception);
      } catch (const std::exception& e) {
        what = e.what();
      }
      reports.push_back(c.message + ": " + what);
    });
    auto other = ssl_context::server();
    other.load_cert_chain(k_other_cert, k_other_key);
    other.set_alpn_protocols({"h2"});
    auto tls = server_context();
    std::vector<std::string> asked;
    tls.set_sni_callback([&asked, other](std::string_view name) -> std::optional<ssl_context> {
      asked.emplace_back(name);
      if (name == "other.test") {
        return other;
      }
      if (name == "broken.test") {
        throw std::runtime_error("no certificate for broken.test");
      }
      if (name == "client.test") {
        return ssl_context::client();
      }
      return std::nullopt;
    });
    std::vector<std::string> served;
    auto handler = [&served](stream_reader r, stream_writer w) -> task<void> {
      served.push_back(w.get_extra_info("server_name"));
      co_await echo_lines(std::move(r), std::move(w));
    };
    simul::server_options sopts{.ssl = &tls};
    auto srv = co_await simul::start_server(handler, "127.0.0.1", 0, sopts);
    auto client = trusting_client();
    client.load_verify_locations(k_other_cert);
    client.set_alpn_protocols({"h2"});
    // One listener, a certificate (and an ALPN list) per name; an IP address
    // is not sent as SNI, so the callback hears "" and keeps the first.
    const std::vector<std::array<std::string, 3>> cases{
        {"other.test", "CN=other.test", "h2"}, {"localhost", "CN=localhost", ""}, {"", "CN=localhost", ""}};
    for (const auto& [name, subject, alpn] : cases) {
      simul::connection_options copts{.ssl = &client, .server_hostname = name};
      auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), copts);
      EXPECT_NE(writer.get_extra_info("peercert").find(subject), std::string::npos)
          << name << ": " << writer.get_extra_info("peercert");
      EXPECT_EQ(writer.get_extra_info("alpn_protocol"), alpn) << name;
      co_await send_and_expect(reader, writer, "ping\n");
      writer.close();
      co_await writer.wait_closed();
    }
    EXPECT_EQ(served, (std::vector<std::string>{"other.test", "localhost", ""}));
    // A callback that throws, or picks a client context: that client's
    // handshake fails, and the program hears of its callback's error.
    for (const char* name : {"broken.test", "client.test"}) {
      simul::connection_options copts{.ssl = &client, .server_hostname = name};
      EXPECT_THROW((void)co_await simul::open_connection("127.0.0.1", srv.port(), copts), simul::ssl_error) << name;
    }
    co_await until([&] { return srv.handshake_failures() == 2 && reports.size() == 2; });
    EXPECT_NE(reports[0].find("server-name callback"), std::string::npos) << reports[0];
    EXPECT_NE(reports[0].find("no certificate for broken.test"), std::string::npos) << reports[0];
    EXPECT_NE(reports[1].find("client context"), std::string::npos) << reports[1];
    EXPECT_EQ(asked, (std::vector<std::string>{"other.test", "localhost", "", "broken.test", "client.test"}));
    EXPECT_THROW(client.set_sni_callback(nullptr), simul::error); // a client context has none
    srv.close();
    co_await srv.wait_closed();
  }());
}
