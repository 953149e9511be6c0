// TCP and Unix streams: reading, writing, flow control, servers and errors.

#include "io_test_util.hpp"

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <map>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using simul::stream_reader;
using simul::stream_writer;
using simul::task;
using simul::test::echo_lines;
using simul::test::open_fd_count;
using simul::test::send_and_close;
using simul::test::send_and_expect;
using simul::test::until;

namespace {

/// Connects to an echo_lines server at `host:port`, checks one line comes back, and closes.
task<void> echo_once(std::string host, int port, std::string line) {
  auto [reader, writer] = co_await simul::open_connection(host, port);
  writer.write(line + "\n");
  EXPECT_EQ(co_await reader.readline(), line + "\n") << host;
  writer.close();
  co_await writer.wait_closed();
}

} // namespace

TEST(LoopStreams, EchoRoundTripsAndLeavesNoDescriptor) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0);
    EXPECT_GT(srv.port(), 0);
    EXPECT_TRUE(srv.is_serving());
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    EXPECT_EQ(writer.get_extra_info("peername"), "127.0.0.1:" + std::to_string(srv.port()));
    EXPECT_NE(writer.get_extra_info("sockname").find("127.0.0.1:"), std::string::npos);
    for (int i = 0; i < 50; ++i) {
      const auto msg = "line " + std::to_string(i) + "\n";
      writer.write(msg);
      EXPECT_EQ(co_await reader.readline(), msg);
    }
    writer.writelines(std::vector<std::string>{"a", "b\n", "c\n"});
    EXPECT_EQ(co_await reader.readline(), "ab\n");
    EXPECT_EQ(co_await reader.readline(), "c\n");
    writer.close();
    co_await writer.wait_closed();
    EXPECT_TRUE(writer.is_closing());
    srv.close();
    co_await srv.wait_closed();
    EXPECT_FALSE(srv.is_serving());
    EXPECT_EQ(srv.active_connections(), 0u);
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopStreams, ReadLineUntilAndToEof) {
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(send_and_close("hello\nworld|rest of it"), "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    EXPECT_EQ(co_await reader.readline(), "hello\n");
    EXPECT_EQ(co_await reader.readuntil("|"), "world|");
    EXPECT_EQ(co_await reader.read(4), "rest");
    EXPECT_EQ(co_await reader.read(), " of it");
    EXPECT_TRUE(reader.at_eof());
    EXPECT_EQ(co_await reader.read(10), "");
    EXPECT_EQ(co_await reader.readline(), "");
    EXPECT_THROW((void)reader.readuntil(""), simul::error);
    srv.close();
    co_await srv.wait_closed();
  }());
}

TEST(LoopStreams, ReadExactlyAtEofCarriesThePartialData) {
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(send_and_close("12345"), "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    try {
      (void)co_await reader.readexactly(10);
      ADD_FAILURE() << "readexactly should have thrown";
    } catch (const simul::incomplete_read_error& e) {
      EXPECT_EQ(e.partial(), "12345");
      EXPECT_EQ(e.expected(), 10u);
    }
    EXPECT_TRUE(reader.at_eof());
    srv.close();
  }());
}

TEST(LoopStreams, ReadUntilAtEofIsIncomplete) {
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(send_and_close("no separator"), "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    try {
      (void)co_await reader.readuntil("\r\n");
      ADD_FAILURE() << "readuntil should have thrown";
    } catch (const simul::incomplete_read_error& e) {
      EXPECT_EQ(e.partial(), "no separator");
    }
    srv.close();
  }());
}

TEST(LoopStreams, LimitOverrunKeepsTheDataBuffered) {
  simul::run([]() -> task<void> {
    const std::string payload(40, 'x');
    auto srv = co_await simul::start_server(send_and_close(payload + "\nnext\n"), "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), {.limit = 16});
    EXPECT_EQ(reader.limit(), 16u);
    co_await until([&r = reader, &payload] { return r.buffered() >= payload.size() + 6; });
    try {
      (void)co_await reader.readline();
      ADD_FAILURE() << "readline should have thrown";
    } catch (const simul::limit_overrun_error& e) {
      EXPECT_EQ(e.consumed(), 40u); // the separator's offset
    }
    // Nothing was consumed: the data is all still there.
    EXPECT_EQ(co_await reader.readexactly(40), payload);
    EXPECT_EQ(co_await reader.readline(), "\n");
    EXPECT_EQ(co_await reader.readline(), "next\n");
    srv.close();
  }());
}

TEST(LoopStreams, LimitOverrunWithoutSeparator) {
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(send_and_close(std::string(100, 'y')), "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), {.limit = 16});
    EXPECT_THROW((void)co_await reader.readuntil("|"), simul::limit_overrun_error);
    std::string all;
    while (!reader.at_eof()) {
      all += co_await reader.read(7);
    }
    EXPECT_EQ(all, std::string(100, 'y'));
    srv.close();
  }());
}

TEST(LoopStreams, ReadExactlyPastTwiceTheLimitIsNotStalledByFlowControl) {
  // Flow control pauses the socket past twice the limit; a reader waiting for
  // more than that must resume it, or it would wait forever.
  simul::run([]() -> task<void> {
    const std::string payload(1024 * 1024, 'z');
    auto srv = co_await simul::start_server(send_and_close(payload), "127.0.0.1", 0);
    simul::connection_options small{.limit = 1024};
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port(), small);
    EXPECT_EQ(co_await reader.readexactly(payload.size()), payload);
    EXPECT_EQ(co_await reader.read(), "");
    srv.close();
  }());
}

TEST(LoopStreams, ConnectionRefusedNamesTheAddress) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0);
    const int port = srv.port();
    srv.close();
    co_await srv.wait_closed();
    try {
      (void)co_await simul::open_connection("127.0.0.1", port);
      ADD_FAILURE() << "connect should have failed";
    } catch (const simul::connection_error& e) {
      EXPECT_EQ(e.code(), ECONNREFUSED);
      EXPECT_EQ(e.address(), "127.0.0.1:" + std::to_string(port));
      const std::string text = e.what();
      EXPECT_NE(text.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << text;
      EXPECT_NE(text.find("refused"), std::string::npos) << text;
    }
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopStreams, UnknownHostIsADnsError) {
  simul::run([]() -> task<void> {
    try {
      (void)co_await simul::open_connection("no-such-host.invalid", 80);
      ADD_FAILURE() << "the name should not resolve";
    } catch (const simul::dns_error& e) {
      EXPECT_NE(std::string(e.what()).find("no-such-host.invalid"), std::string::npos) << e.what();
      EXPECT_NE(e.code(), 0);
    }
  }());
}

TEST(LoopStreams, BadArgumentsAreErrors) {
  simul::run([]() -> task<void> {
    EXPECT_THROW((void)co_await simul::open_connection("127.0.0.1", 70000), simul::error);
    EXPECT_THROW((void)co_await simul::start_server(nullptr, "127.0.0.1", 0), simul::error);
    EXPECT_THROW((void)co_await simul::start_server(echo_lines, "127.0.0.1", -1), simul::error);
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0);
    try {
      (void)co_await simul::start_server(echo_lines, "127.0.0.1", srv.port());
      ADD_FAILURE() << "a second bind to the same port should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EADDRINUSE);
      EXPECT_NE(std::string(e.what()).find(std::to_string(srv.port())), std::string::npos);
    }
    stream_reader empty;
    EXPECT_THROW((void)empty.read(1), simul::error);
    srv.close();
  }());
}

TEST(LoopStreams, ResetByPeerIsAConnectionError) {
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(
        [](stream_reader reader, stream_writer writer) -> task<void> {
          (void)co_await reader.readline();
          writer.abort(); // RST
          co_return;
        },
        "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    writer.write("hi\n");
    try {
      auto got = co_await reader.read(100);
      ADD_FAILURE() << "read should have failed, got " << got.size() << " bytes";
    } catch (const simul::connection_error& e) {
      EXPECT_EQ(e.code(), ECONNRESET);
      EXPECT_NE(std::string(e.what()).find("127.0.0.1:"), std::string::npos);
    }
    EXPECT_THROW(writer.write("more"), simul::connection_error);
    EXPECT_THROW(co_await writer.drain(), simul::connection_error);
    srv.close();
  }());
}

TEST(LoopStreams, WriteAfterCloseThrows) {
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    writer.close();
    EXPECT_TRUE(writer.is_closing());
    try {
      writer.write("late");
      ADD_FAILURE() << "write after close should throw";
    } catch (const simul::connection_error& e) {
      EXPECT_EQ(e.code(), EPIPE);
      EXPECT_NE(std::string(e.what()).find("closed"), std::string::npos);
    }
    co_await writer.wait_closed();
    EXPECT_EQ(co_await reader.read(10), "");
    srv.close();
  }());
}

TEST(LoopStreams, WriteEofLetsThePeerSeeTheEnd) {
  simul::run([]() -> task<void> {
    std::string received;
    auto srv = co_await simul::start_server(
        [&](stream_reader reader, stream_writer writer) -> task<void> {
          received = co_await reader.read(); // until EOF
          writer.write("got " + std::to_string(received.size()));
          writer.close();
        },
        "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    EXPECT_TRUE(writer.can_write_eof());
    writer.write(std::string(1000, 'z'));
    writer.write_eof();
    EXPECT_THROW(writer.write("x"), simul::connection_error);
    EXPECT_EQ(co_await reader.read(), "got 1000");
    EXPECT_EQ(received, std::string(1000, 'z'));
    srv.close();
    co_await srv.wait_closed();
  }());
}

TEST(LoopStreams, DrainWaitsForASlowReaderWithinTheWaterMarks) {
  simul::run([]() -> task<void> {
    bool start_reading = false;
    std::size_t total_read = 0;
    auto srv = co_await simul::start_server(
        [&](stream_reader reader, stream_writer) -> task<void> {
          co_await until([&] { return start_reading; });
          while (true) {
            auto chunk = co_await reader.read(4096);
            if (chunk.empty()) {
              break;
            }
            total_read += chunk.size();
            co_await simul::yield_now(); // a slow reader
          }
        },
        "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    writer.set_write_buffer_limits(64 * 1024, 16 * 1024);
    EXPECT_THROW(writer.set_write_buffer_limits(10, 20), simul::error);
    const std::string chunk(64 * 1024, 'd');
    std::size_t written = 0;
    // Fill the socket's buffers: the peer reads nothing yet.
    while (writer.get_write_buffer_size() <= 64 * 1024) {
      writer.write(chunk);
      written += chunk.size();
    }
    bool drained = false;
    auto drainer = simul::create_task([](stream_writer w, bool& done) -> task<void> {
      co_await w.drain();
      done = true;
    }(writer, drained));
    co_await simul::sleep(20ms);
    EXPECT_FALSE(drained) << "drain returned while the peer read nothing";
    start_reading = true;
    co_await drainer;
    EXPECT_TRUE(drained);
    EXPECT_LE(writer.get_write_buffer_size(), 16u * 1024);
    // A writer that drains after each write stays under the high mark.
    std::size_t worst = 0;
    for (int i = 0; i < 64; ++i) {
      writer.write(chunk);
      written += chunk.size();
      co_await writer.drain();
      worst = std::max(worst, writer.get_write_buffer_size());
    }
    EXPECT_LE(worst, 64u * 1024);
    writer.close();
    co_await writer.wait_closed();
    co_await until([&] { return srv.active_connections() == 0; });
    EXPECT_EQ(total_read, written);
    srv.close();
  }());
}

TEST(LoopStreams, CancelledReadConsumesNothing) {
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(
        [](stream_reader reader, stream_writer writer) -> task<void> {
          writer.write("12345");
          (void)co_await reader.read(); // stays open until the client closes
        },
        "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    co_await until([&r = reader] { return r.buffered() == 5; });
    auto waiting = simul::create_task(
        [](stream_reader r) -> task<std::string> { co_return co_await r.readuntil("never"); }(reader));
    co_await simul::yield_now();
    waiting.cancel();
    EXPECT_THROW(co_await waiting, simul::cancelled_error);
    EXPECT_EQ(co_await reader.read(100), "12345");
    srv.close();
  }());
}

TEST(LoopStreams, TwoReadersAtOnceIsAnError) {
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    auto first =
        simul::create_task([](stream_reader r) -> task<std::string> { co_return co_await r.readline(); }(reader));
    co_await simul::yield_now();
    EXPECT_THROW((void)co_await reader.readline(), simul::error);
    writer.write("x\n");
    EXPECT_EQ(co_await first, "x\n");
    srv.close();
  }());
}

TEST(LoopStreams, HandlerErrorsAreReportedWithThePeer) {
  std::vector<std::string> reports;
  simul::event_loop loop;
  loop.set_exception_handler(
      [&](simul::event_loop&, const simul::exception_context& c) { reports.push_back(c.message); });
  loop.run_until_complete([]() -> task<void> {
    auto srv = co_await simul::start_server(
        [](stream_reader, stream_writer) -> task<void> {
          throw std::runtime_error("handler failed");
          co_return;
        },
        "127.0.0.1", 0);
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
    EXPECT_EQ(co_await reader.read(), ""); // the connection closes when the handler ends
    srv.close();
    co_await srv.wait_closed();
  }());
  loop.close();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("connection handler"), std::string::npos) << reports[0];
  EXPECT_NE(reports[0].find("127.0.0.1:"), std::string::npos) << reports[0];
}

TEST(LoopStreams, CloseClientsCancelsHandlersAndServeForeverEndsOnClose) {
  simul::run([]() -> task<void> {
    int cancelled = 0;
    auto srv = co_await simul::start_server(
        [&](stream_reader reader, stream_writer) -> task<void> {
          try {
            (void)co_await reader.readline(); // the client never writes
          } catch (const simul::cancelled_error&) {
            ++cancelled;
            throw;
          }
        },
        "127.0.0.1", 0);
    auto serving = simul::create_task(srv.serve_forever());
    std::vector<stream_writer> writers;
    for (int i = 0; i < 3; ++i) {
      auto [r, w] = co_await simul::open_connection("127.0.0.1", srv.port());
      writers.push_back(w);
    }
    co_await until([&] { return srv.active_connections() == 3; });
    srv.close();
    co_await serving; // serve_forever ends once the server is closed
    srv.close_clients();
    co_await srv.wait_closed();
    EXPECT_EQ(cancelled, 3);
    EXPECT_EQ(srv.active_connections(), 0u);
  }());
}

TEST(LoopStreams, CancellingServeForeverClosesTheServer) {
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0);
    auto serving = simul::create_task(srv.serve_forever());
    co_await simul::yield_now();
    serving.cancel();
    EXPECT_THROW(co_await serving, simul::cancelled_error);
    EXPECT_FALSE(srv.is_serving());
    co_await srv.wait_closed();
  }());
}

TEST(LoopStreams, LoopClosingWithOpenStreamsFreesThem) {
  const auto fds_before = open_fd_count();
  {
    simul::event_loop loop;
    stream_writer kept; // outlives the loop's run, not the loop
    loop.run_until_complete([](stream_writer& out) -> task<void> {
      auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", 0);
      auto [reader, writer] = co_await simul::open_connection("127.0.0.1", srv.port());
      writer.write("pending\n");
      out = writer;
      // A reader left waiting in a task the loop will cancel at close.
      simul::create_task([](stream_reader r) -> task<void> { (void)co_await r.read(); }(reader));
      co_await simul::sleep(5ms);
    }(kept));
    loop.close();
  }
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopStreams, UnixSocketsEchoAndCleanUp) {
  const auto path = simul::test::temp_socket_path("echo");
  const auto fds_before = open_fd_count();
  simul::run([](std::string path) -> task<void> {
    auto srv = co_await simul::start_unix_server(echo_lines, path);
    EXPECT_EQ(srv.port(), 0);
    EXPECT_EQ(srv.sockname(), path);
    // A stale socket file from an earlier server is replaced.
    auto srv2 = co_await simul::start_unix_server(echo_lines, path + "2");
    auto [reader, writer] = co_await simul::open_unix_connection(path);
    EXPECT_EQ(writer.get_extra_info("peername"), path);
    co_await send_and_expect(reader, writer, "over unix\n");
    writer.close();
    srv.close();
    srv2.close();
    co_await srv.wait_closed();
    co_await srv2.wait_closed();
    try {
      (void)co_await simul::open_unix_connection(path);
      ADD_FAILURE() << "connect to a removed socket should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), ENOENT);
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
    }
  }(path));
  struct stat st {};
  EXPECT_NE(::stat(path.c_str(), &st), 0) << "the socket file should be removed";
  EXPECT_EQ(open_fd_count(), fds_before);
}

namespace {
bool ipv6_loopback_enabled() {
  std::ifstream f("/proc/net/if_inet6");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("00000000000000000000000000000001", 0) == 0) {
      return true;
    }
  }
  return false;
}
} // namespace

TEST(LoopStreams, AnEmptyHostListensOnEveryInterfaceOfBothFamiliesOnOnePort) {
  if (!ipv6_loopback_enabled()) {
    GTEST_SKIP() << "no IPv6 loopback on this machine";
  }
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(echo_lines, "", 0);
    const auto port = std::to_string(srv.port());
    EXPECT_EQ(srv.socknames(), (std::vector<std::string>{"0.0.0.0:" + port, "[::]:" + port}));
    for (const std::string host : {"127.0.0.1", "::1"}) {
      co_await echo_once(host, srv.port(), "hello " + host);
    }
    srv.close();
    co_await srv.wait_closed();
    EXPECT_TRUE(srv.socknames().empty());
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopStreams, ABindErrorOnOneAddressClosesTheOthersAndNamesTheAddress) {
  if (!ipv6_loopback_enabled()) {
    GTEST_SKIP() << "no IPv6 loopback on this machine";
  }
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    auto v6 = co_await simul::start_server(echo_lines, "::", 0); // takes the port on IPv6 only
    try {
      (void)co_await simul::start_server(echo_lines, "", v6.port()); // 0.0.0.0 binds, :: cannot
      ADD_FAILURE() << "the IPv6 half of the port is taken";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EADDRINUSE);
      EXPECT_NE(std::string(e.what()).find("[::]:" + std::to_string(v6.port())), std::string::npos) << e.what();
    }
    // The IPv4 listener made on the way was closed: the port is free there.
    auto v4 = co_await simul::start_server(echo_lines, "127.0.0.1", v6.port());
    EXPECT_EQ(v4.port(), v6.port());
    v4.close();
    v6.close();
    co_await v4.wait_closed();
    co_await v6.wait_closed();
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

namespace {

/// A handler that answers any line with `name` and closes.
simul::connection_handler answer_with(std::string name) {
  return [name](stream_reader reader, stream_writer writer) -> task<void> {
    (void)co_await reader.readline();
    writer.write(name + "\n");
    writer.close();
    co_await writer.wait_closed();
  };
}

} // namespace

TEST(LoopStreams, ReusePortLetsALoopOnEachThreadServeOnePort) {
  const auto fds_before = open_fd_count();
  std::atomic<int> port{0};
  std::atomic<bool> done{false};
  std::atomic<bool> other_failed{false};
  // The second loop, on its own thread, shares the first one's port. If it
  // cannot, the test fails here and the first loop stops waiting for it.
  std::thread other([&] {
    simul::run([&]() -> task<void> {
      co_await until([&] { return port.load() != 0; });
      try {
        auto srv = co_await simul::start_server(answer_with("B"), "127.0.0.1", port.load(), {.reuse_port = true});
        EXPECT_EQ(srv.port(), port.load());
        port.store(-srv.port()); // tells the first loop that both listen
        co_await until([&] { return done.load(); });
        srv.close();
        co_await srv.wait_closed();
      } catch (const std::exception& e) {
        ADD_FAILURE() << "the second loop's server: " << e.what();
        other_failed.store(true);
      }
    }());
  });
  simul::run([&]() -> task<void> {
    auto srv = co_await simul::start_server(answer_with("A"), "127.0.0.1", 0, {.reuse_port = true});
    const int p = srv.port();
    port.store(p);
    co_await until([&] { return port.load() == -p || other_failed.load(); });
    if (other_failed.load()) {
      srv.close();
      co_await srv.wait_closed();
      co_return;
    }
    // Without the option, the port is taken.
    try {
      (void)co_await simul::start_server(answer_with("C"), "127.0.0.1", p);
      ADD_FAILURE() << "a server without reuse_port bound a port two others listen on";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EADDRINUSE);
      EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(p)), std::string::npos) << e.what();
    }
    // The kernel spreads connections over both listeners (by a hash of each
    // connection's addresses): 64 connections all landing on one of two
    // would be a 1 in 2^63 event.
    std::map<std::string, int> served;
    for (int i = 0; i < 64; ++i) {
      auto [reader, writer] = co_await simul::open_connection("127.0.0.1", p);
      writer.write("who?\n");
      ++served[co_await reader.readline()];
      writer.close();
      co_await writer.wait_closed();
    }
    EXPECT_EQ(served.size(), 2u);
    EXPECT_EQ(served["A\n"] + served["B\n"], 64);
    done.store(true);
    srv.close();
    co_await srv.wait_closed();
  }());
  other.join();
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopStreams, ReusePortIsForTcpServersOnly) {
  simul::run([]() -> task<void> {
    const auto path = simul::test::temp_socket_path("reuse-port");
    EXPECT_THROW((void)co_await simul::start_unix_server(answer_with("A"), path, {.reuse_port = true}), simul::error);
  }());
}

TEST(LoopStreams, AListOfHostsListensOnEachOnOnePort) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    // 127.0.0.2 is a loopback address too on Linux (all of 127/8). The task
    // is made outside the co_await: g++ 12 rejects a braced list of strings
    // inside one (docs/loop-io.md).
    auto starting = simul::start_server(echo_lines, {"127.0.0.1", "127.0.0.2"}, 0);
    auto srv = co_await std::move(starting);
    const auto port = std::to_string(srv.port());
    EXPECT_EQ(srv.socknames(), (std::vector<std::string>{"127.0.0.1:" + port, "127.0.0.2:" + port}));
    EXPECT_EQ(srv.sockname(), "127.0.0.1:" + port + ", 127.0.0.2:" + port);
    for (const std::string host : {"127.0.0.1", "127.0.0.2"}) {
      co_await echo_once(host, srv.port(), "hello " + host);
    }
    // A host listed twice is bound once; a vector works as the braced list does.
    const std::vector<std::string> twice{"127.0.0.1", "127.0.0.1"};
    auto again = co_await simul::start_server(echo_lines, twice, 0);
    EXPECT_EQ(again.socknames().size(), 1u);
    // A bind error on one host names that host's address and closes the rest.
    const std::vector<std::string> taken{"127.0.0.3", "127.0.0.2"};
    try {
      (void)co_await simul::start_server(echo_lines, taken, srv.port());
      ADD_FAILURE() << "127.0.0.2:" << port << " is taken";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EADDRINUSE);
      EXPECT_NE(std::string(e.what()).find("127.0.0.2:" + port), std::string::npos) << e.what();
    }
    auto freed = co_await simul::start_server(echo_lines, "127.0.0.3", srv.port());
    const std::vector<simul::server*> servers{&srv, &again, &freed};
    for (auto* s : servers) {
      s->close();
      co_await s->wait_closed();
    }
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopStreams, NoHostsMeansEveryInterface) {
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(echo_lines, std::vector<std::string>{}, 0);
    EXPECT_EQ(srv.socknames().front(), "0.0.0.0:" + std::to_string(srv.port()));
    co_await echo_once("127.0.0.1", srv.port(), "hi");
    srv.close();
    co_await srv.wait_closed();
  }());
}
