// open_connection's choice of address: Happy Eyeballs, interleaving, the
// family and the local address, and what it says when no address accepts.

#include "io/io_internal.hpp"
#include "io_test_util.hpp"

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using simul::task;
using simul::test::black_hole;
using simul::test::echo_lines;
using simul::test::open_fd_count;
using simul::test::send_and_expect;

namespace {

/// Whether the empty host resolves to ::1 first and 127.0.0.1 after, as
/// glibc orders them; the tests that need two addresses skip otherwise.
bool loopback_is_v6_then_v4() {
  bool yes = false;
  simul::run([](bool& out) -> task<void> {
    auto answers = co_await simul::getaddrinfo("", "80", {.socktype = SOCK_STREAM});
    out = answers.size() == 2 && answers[0].family == AF_INET6 && answers[1].family == AF_INET;
  }(yes));
  return yes;
}

#define SKIP_UNLESS_LOOPBACK_PAIR()                                                                                    \
  if (!loopback_is_v6_then_v4()) {                                                                                     \
    GTEST_SKIP() << "the empty host does not resolve to ::1 then 127.0.0.1 here";                                      \
  }

std::vector<std::string> both_loopbacks() { return {"::1", "127.0.0.1"}; }

std::string port_text(int port) { return std::to_string(port); }

} // namespace

TEST(LoopConnect, HappyEyeballsGetsPastAnAddressThatHangs) {
  SKIP_UNLESS_LOOPBACK_PAIR();
  const auto fds_before = open_fd_count();
  black_hole hole(AF_INET6, 0); // [::1]:port, tried first, never answers
  if (!hole.ok()) {
    GTEST_SKIP() << "no hanging listener on [::1] here";
  }
  simul::run([](int port) -> task<void> {
    auto srv = co_await simul::start_server(echo_lines, "127.0.0.1", port);
    // One address after another: the first attempt holds the call.
    EXPECT_THROW((void)co_await simul::wait_for(simul::open_connection("", port), 300ms), simul::timeout_error);
    // Staggered: 127.0.0.1 is tried 20 ms in and answers.
    // (The bound only turns a hang into a failure.)
    auto [reader, writer] =
        co_await simul::wait_for(simul::open_connection("", port, {.happy_eyeballs_delay = 20ms}), 30s);
    EXPECT_EQ(writer.get_extra_info("peername"), "127.0.0.1:" + port_text(port));
    co_await send_and_expect(reader, writer, "ping\n");
    writer.close();
    co_await writer.wait_closed();
    srv.close();
    co_await srv.wait_closed();
  }(hole.port()));
  EXPECT_EQ(open_fd_count(), fds_before + 2); // the black hole's two sockets
}

TEST(LoopConnect, HappyEyeballsKeepsTheFirstAddressWhenItAnswersInTime) {
  SKIP_UNLESS_LOOPBACK_PAIR();
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(echo_lines, both_loopbacks(), 0);
    auto [reader, writer] = co_await simul::open_connection("", srv.port(), {.happy_eyeballs_delay = 250ms});
    EXPECT_EQ(writer.get_extra_info("peername"), "[::1]:" + port_text(srv.port()));
    co_await send_and_expect(reader, writer, "ping\n");
    // With no delay at all both attempts start at once, and either may win.
    auto [r2, w2] = co_await simul::open_connection("", srv.port(), {.happy_eyeballs_delay = 0ms});
    co_await send_and_expect(r2, w2, "ping\n");
    writer.close();
    w2.close();
    co_await writer.wait_closed();
    co_await w2.wait_closed();
    srv.close();
    co_await srv.wait_closed();
  }());
}

TEST(LoopConnect, EveryAddressRefusedNamesEachInTheOrderTried) {
  SKIP_UNLESS_LOOPBACK_PAIR();
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(echo_lines, both_loopbacks(), 0);
    const int port = srv.port();
    srv.close();
    co_await srv.wait_closed();
    for (const bool staggered : {false, true}) {
      simul::connection_options options;
      if (staggered) {
        options.happy_eyeballs_delay = 50ms;
      }
      try {
        (void)co_await simul::open_connection("", port, options);
        ADD_FAILURE() << "nothing listens on port " << port;
      } catch (const simul::connection_error& e) {
        const std::string text = e.what();
        EXPECT_EQ(e.code(), ECONNREFUSED) << text;
        EXPECT_EQ(e.address(), ":" + port_text(port)) << text;
        const auto v6 = text.find("[::1]:" + port_text(port) + ": connection refused");
        const auto v4 = text.find("127.0.0.1:" + port_text(port) + ": connection refused");
        EXPECT_NE(v6, std::string::npos) << text;
        EXPECT_NE(v4, std::string::npos) << text;
        EXPECT_LT(v6, v4) << text;
      }
    }
    // all_errors: each attempt's error on its own, in the order tried.
    for (const auto* host : {"", "127.0.0.1"}) {
      try {
        (void)co_await simul::open_connection(host, port, {.happy_eyeballs_delay = 50ms, .all_errors = true});
        ADD_FAILURE() << "nothing listens on port " << port;
      } catch (const simul::exception_group& group) {
        std::vector<std::string> addresses;
        for (const auto& e : group.exceptions()) {
          try {
            std::rethrow_exception(e);
          } catch (const simul::connection_error& c) {
            EXPECT_EQ(c.code(), ECONNREFUSED);
            addresses.push_back(c.address());
          }
        }
        std::vector<std::string> expected{"127.0.0.1:" + port_text(port)};
        if (std::string(host).empty()) {
          expected.insert(expected.begin(), "[::1]:" + port_text(port));
        }
        EXPECT_EQ(addresses, expected);
      }
    }
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopConnect, FamilyChoosesTheAddresses) {
  SKIP_UNLESS_LOOPBACK_PAIR();
  simul::run([]() -> task<void> {
    auto srv = co_await simul::start_server(echo_lines, both_loopbacks(), 0);
    const auto port = port_text(srv.port());
    {
      auto [reader, writer] = co_await simul::open_connection("", srv.port(), {.family = AF_INET});
      EXPECT_EQ(writer.get_extra_info("peername"), "127.0.0.1:" + port);
      writer.close();
    }
    {
      auto [reader, writer] = co_await simul::open_connection("", srv.port(), {.family = AF_INET6});
      EXPECT_EQ(writer.get_extra_info("peername"), "[::1]:" + port);
      writer.close();
    }
    // A numeric address of the other family does not resolve under it.
    EXPECT_THROW((void)co_await simul::open_connection("127.0.0.1", srv.port(), {.family = AF_INET6}),
                 simul::dns_error);
    EXPECT_THROW((void)co_await simul::open_connection("", srv.port(), {.family = AF_UNIX}), simul::error);
    srv.close();
    co_await srv.wait_closed();
  }());
}

TEST(LoopConnect, LocalAddressBindsTheSocketBeforeConnecting) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    std::string seen_peer;
    auto srv = co_await simul::start_server(
        [&seen_peer](simul::stream_reader reader, simul::stream_writer writer) -> task<void> {
          seen_peer = writer.get_extra_info("peername");
          co_await echo_lines(std::move(reader), std::move(writer));
        },
        "127.0.0.1", 0);
    const int port = srv.port();
    {
      // All of 127.0.0.0/8 is the loopback: 127.0.0.2 is a local address of its own.
      auto [reader, writer] = co_await simul::open_connection("127.0.0.1", port, {.local_host = "127.0.0.2"});
      co_await send_and_expect(reader, writer, "ping\n");
      EXPECT_EQ(writer.get_extra_info("sockname").rfind("127.0.0.2:", 0), 0u) << writer.get_extra_info("sockname");
      EXPECT_EQ(seen_peer, writer.get_extra_info("sockname"));
      writer.close();
      co_await writer.wait_closed();
    }
    // A local port already taken (the server's own).
    try {
      (void)co_await simul::open_connection("127.0.0.1", port, {.local_host = "127.0.0.1", .local_port = port});
      ADD_FAILURE() << "binding to the server's own address should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EADDRINUSE) << e.what();
      EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + port_text(port)), std::string::npos) << e.what();
    }
    // No local address of the remote address's family.
    try {
      (void)co_await simul::open_connection("127.0.0.1", port, {.local_host = "::1"});
      ADD_FAILURE() << "an IPv6 local address cannot reach an IPv4 one";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EADDRNOTAVAIL) << e.what();
      EXPECT_NE(std::string(e.what()).find("[::1]:0"), std::string::npos) << e.what();
    }
    EXPECT_THROW((void)co_await simul::open_connection("127.0.0.1", port, {.local_port = 70000}), simul::error);
    EXPECT_THROW((void)co_await simul::open_connection("127.0.0.1", port, {.local_host = "no-such-host.invalid"}),
                 simul::dns_error);
    srv.close();
    co_await srv.wait_closed();
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopConnect, OptionsThatOnlyTcpNamesKnowAreRefusedElsewhere) {
  simul::run([]() -> task<void> {
    const auto path = simul::test::temp_socket_path("tcp-only");
    auto srv = co_await simul::start_unix_server(echo_lines, path);
    EXPECT_THROW((void)co_await simul::open_unix_connection(path, {.family = AF_INET}), simul::error);
    EXPECT_THROW((void)co_await simul::open_unix_connection(path, {.happy_eyeballs_delay = 10ms}), simul::error);
    EXPECT_THROW((void)co_await simul::open_unix_connection(path, {.interleave = 2}), simul::error);
    EXPECT_THROW((void)co_await simul::open_unix_connection(path, {.all_errors = true}), simul::error);
    EXPECT_THROW((void)co_await simul::open_connection(simul::socket_fd{0}, {.local_host = "127.0.0.1"}), simul::error);
    EXPECT_THROW((void)co_await simul::open_connection("127.0.0.1", 80, {.happy_eyeballs_delay = -1ms}), simul::error);
    srv.close();
    co_await srv.wait_closed();
  }());
}

TEST(LoopConnect, CancelledConnectLeavesNothingOpen) {
  const auto fds_before = open_fd_count();
  {
    black_hole v4(AF_INET, 0);
    ASSERT_TRUE(v4.ok()) << "a full listen queue on 127.0.0.1 should make a connect hang";
    black_hole v6(AF_INET6, v4.port());
    simul::run([&]() -> task<void> {
      auto one = simul::create_task(simul::open_connection("127.0.0.1", v4.port()));
      // Both attempts pending when cancelled, where ::1 hangs too.
      auto both = simul::create_task(
          simul::open_connection(v6.ok() ? "" : "127.0.0.1", v4.port(), {.happy_eyeballs_delay = 1ms}));
      co_await simul::sleep(20ms);
      EXPECT_FALSE(one.done());
      EXPECT_FALSE(both.done());
      one.cancel();
      both.cancel();
      EXPECT_THROW((void)co_await one, simul::cancelled_error);
      EXPECT_THROW((void)co_await both, simul::cancelled_error);
    }());
  }
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopConnect, InterleaveAlternatesFamiliesAsAsyncioDoes) {
  auto make = [](std::initializer_list<int> families) {
    std::vector<simul::detail::resolved_address> out;
    int n = 0;
    for (int f : families) {
      simul::detail::resolved_address a;
      a.family = f;
      a.canonical_name = std::to_string(n++); // to tell them apart
      out.push_back(a);
    }
    return out;
  };
  auto order = [](const std::vector<simul::detail::resolved_address>& v) {
    std::string s;
    for (const auto& a : v) {
      s += (a.family == AF_INET6 ? "6:" : "4:") + a.canonical_name + " ";
    }
    return s;
  };
  const auto input = make({AF_INET6, AF_INET6, AF_INET6, AF_INET, AF_INET});
  EXPECT_EQ(order(simul::detail::interleave_families(input, 1)), "6:0 4:3 6:1 4:4 6:2 ");
  EXPECT_EQ(order(simul::detail::interleave_families(input, 2)), "6:0 6:1 4:3 6:2 4:4 ");
  EXPECT_EQ(order(simul::detail::interleave_families(input, 9)), "6:0 6:1 6:2 4:3 4:4 ");
  EXPECT_EQ(order(simul::detail::interleave_families(make({AF_INET, AF_INET6, AF_INET}), 1)), "4:0 6:1 4:2 ");
  EXPECT_EQ(order(simul::detail::interleave_families(make({AF_INET, AF_INET}), 1)), "4:0 4:1 ");
  EXPECT_EQ(order(simul::detail::interleave_families({}, 1)), "");
}

// Tests send nothing beyond the loopback, so an unreachable network is
// checked where libuv's code becomes an exception.
TEST(LoopConnect, UnreachableIsAConnectionErrorNamingTheAddress) {
  for (const int code : {UV_ENETUNREACH, UV_EHOSTUNREACH}) {
    try {
      std::rethrow_exception(simul::detail::make_io_error(code, "connect to", "[2001:db8::1]:80"));
    } catch (const simul::connection_error& e) {
      EXPECT_EQ(e.code(), -code);
      EXPECT_EQ(e.address(), "[2001:db8::1]:80");
      EXPECT_EQ(std::string(e.what()).rfind("connect to [2001:db8::1]:80: ", 0), 0u) << e.what();
    } catch (...) {
      ADD_FAILURE() << "not a connection_error for " << code;
    }
  }
}
