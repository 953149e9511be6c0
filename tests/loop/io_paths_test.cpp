// The I/O headers' old paths (before they moved to <simul/loop/io/>) still
// compile on their own and give the same names; copies of a server share it.
// Only old paths are included here, on purpose.

#include <simul/loop/dns.hpp>
#include <simul/loop/event_loop.hpp>
#include <simul/loop/files.hpp>
#include <simul/loop/io_error.hpp>
#include <simul/loop/server.hpp> // the client's open_connection and the server both
#include <simul/loop/signals.hpp>
#include <simul/loop/socket_fd.hpp>
#include <simul/loop/ssl.hpp>
#include <simul/loop/stream.hpp>
#include <simul/loop/subprocess.hpp>
#include <simul/loop/task_handle.hpp>
#include <simul/loop/udp.hpp>

#include <gtest/gtest.h>

#include <string>
#include <type_traits>
#include <utility>

namespace {

static_assert(std::is_same_v<decltype(simul::connection_options{}.limit), std::size_t>);
static_assert(std::is_same_v<decltype(simul::server_options{}.backlog), int>);
static_assert(std::is_base_of_v<simul::io_error, simul::connection_error>);
static_assert(std::is_copy_constructible_v<simul::datagram_endpoint> && std::is_copy_constructible_v<simul::process>);

simul::task<void> answer_one_line(simul::stream_reader reader, simul::stream_writer writer) {
  writer.write(co_await reader.readline());
  co_await writer.drain();
}

/// Sends one line to 127.0.0.1:`port` and gives what comes back.
simul::task<std::string> round_trip(int port) {
  auto [reader, writer] = co_await simul::open_connection("127.0.0.1", port);
  writer.write("ping\n");
  auto line = co_await reader.readline();
  writer.close();
  co_await writer.wait_closed();
  co_return line;
}

} // namespace

TEST(LoopIoPaths, OldServerHeaderGivesTheClientAndTheServer) {
  simul::run([]() -> simul::task<void> {
    auto srv = co_await simul::start_server(answer_one_line, "127.0.0.1", 0);
    EXPECT_EQ(co_await round_trip(srv.port()), "ping\n");
    srv.close();
    co_await srv.wait_closed();
  }());
}

TEST(LoopIoPaths, CopiesShareOneServerUntilTheLastGoes) {
  simul::run([]() -> simul::task<void> {
    auto srv = co_await simul::start_server(answer_one_line, "127.0.0.1", 0);
    const int port = srv.port();
    auto copy = srv;
    auto moved = std::move(srv);
    EXPECT_FALSE(srv); // NOLINT(bugprone-use-after-move): moved-from is empty, as documented
    copy = simul::server();
    EXPECT_TRUE(moved.is_serving()); // one copy left: still listening
    EXPECT_EQ(co_await round_trip(port), "ping\n");
    auto waiter = moved.wait_closed(); // holds the state, not the server
    moved = simul::server();           // the last copy: the listener closes
    co_await std::move(waiter);
    bool refused = false;
    try {
      (void)co_await round_trip(port);
    } catch (const simul::connection_error&) {
      refused = true;
    }
    EXPECT_TRUE(refused);
  }());
}
