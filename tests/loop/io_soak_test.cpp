// Soak: many concurrent clients, many round trips, random disconnects from
// both sides; nothing may be left behind (descriptors, handles, tasks).

#include "io_test_util.hpp"

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

using simul::stream_reader;
using simul::stream_writer;
using simul::task;

namespace {

// 200 clients x 1000 round trips, with random disconnects from both sides
// (SIMUL_SOAK_ROUND_TRIPS overrides the count). Measured: about 7 s in a
// debug build and under TSan, 18 s under ASan on a busy machine.
int round_trips() {
  if (const char* env = std::getenv("SIMUL_SOAK_ROUND_TRIPS"); env != nullptr && std::atoi(env) > 0) {
    return std::atoi(env);
  }
  return 1000;
}
const int k_round_trips = round_trips();
constexpr int k_clients = 200;

struct soak_stats {
  int completed_round_trips = 0;
  int client_disconnects = 0;
  int server_disconnects = 0;
  int reconnects = 0;
  int mismatches = 0;
};

// Echoes lines; now and then drops the connection on purpose (RST).
task<void> flaky_echo(stream_reader reader, stream_writer writer, soak_stats& stats, unsigned seed) {
  std::mt19937 rng(seed);
  try {
    while (true) {
      auto line = co_await reader.readline();
      if (line.empty()) {
        break;
      }
      if (rng() % 500 == 0) {
        ++stats.server_disconnects;
        writer.abort();
        co_return;
      }
      writer.write(line);
      co_await writer.drain();
    }
  } catch (const simul::connection_error&) {
    // the client went away abruptly
  }
  writer.close();
}

task<void> client(int id, int port, soak_stats& stats) {
  std::mt19937 rng(static_cast<unsigned>(id) * 7919u + 1);
  int done = 0;
  while (done < k_round_trips) {
    auto [reader, writer] = co_await simul::open_connection("127.0.0.1", port);
    try {
      while (done < k_round_trips) {
        const auto msg = std::to_string(id) + ":" + std::to_string(done) + ":" + std::string(rng() % 64, 'p') + "\n";
        writer.write(msg);
        const auto roll = rng() % 400;
        if (roll == 0) { // hang up hard before the answer
          ++stats.client_disconnects;
          writer.abort();
          break;
        }
        if (roll == 1) { // hang up politely before the answer
          ++stats.client_disconnects;
          writer.close();
          break;
        }
        auto echo = co_await reader.readline();
        if (echo.empty()) {
          break; // the server dropped us: reconnect
        }
        if (echo != msg) {
          ++stats.mismatches;
        }
        ++done;
        ++stats.completed_round_trips;
      }
    } catch (const simul::connection_error&) {
      // reset by the server: reconnect
    }
    writer.close();
    if (done < k_round_trips) {
      ++stats.reconnects;
    }
  }
}

} // namespace

TEST(LoopSoak, ManyClientsRandomDisconnectsLeaveNothingBehind) {
  const auto fds_before = simul::test::open_fd_count();
  std::vector<std::string> reports;
  soak_stats stats;
  {
    simul::event_loop loop;
    loop.set_debug(true); // reports handles left open at close
    loop.set_slow_callback_duration(std::chrono::seconds(30));
    loop.set_exception_handler(
        [&](simul::event_loop&, const simul::exception_context& c) { reports.push_back(c.message); });
    loop.run_until_complete([](soak_stats& stats) -> task<void> {
      unsigned seeds = 0;
      auto srv = co_await simul::start_server(
          [&](stream_reader r, stream_writer w) -> task<void> { return flaky_echo(r, w, stats, ++seeds); }, "127.0.0.1",
          0, {.backlog = 512});
      std::vector<simul::task_handle<void>> clients;
      for (int i = 0; i < k_clients; ++i) {
        clients.push_back(simul::create_task(client(i, srv.port(), stats)));
      }
      for (auto& c : clients) {
        co_await c;
      }
      srv.close();
      co_await srv.wait_closed();
      EXPECT_EQ(srv.active_connections(), 0u);
      clients.clear();
      // Only this task is left.
      EXPECT_EQ(simul::all_tasks().size(), 1u);
    }(stats));
    EXPECT_TRUE(simul::all_tasks(loop).empty());
    loop.close();
  }
  EXPECT_EQ(stats.completed_round_trips, k_clients * k_round_trips);
  EXPECT_EQ(stats.mismatches, 0);
  EXPECT_GT(stats.client_disconnects, 0);
  EXPECT_GT(stats.server_disconnects, 0);
  EXPECT_GT(stats.reconnects, 0);
  for (const auto& r : reports) {
    ADD_FAILURE() << "reported: " << r;
  }
  EXPECT_EQ(simul::test::open_fd_count(), fds_before);
}
