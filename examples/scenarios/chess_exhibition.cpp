// chess_exhibition: the simultaneous exhibition of the notes, on a scaled clock.
//
// A chess master plays 24 opponents. She needs 5 s per move, each opponent
// 55 s, and a game lasts 30 move pairs.
//
//   synchronous: one game after another, the master waits out every reply
//     board 1  M....................M....................  (30 pairs)
//     board 2                                             M..........
//     ...      24 × 30 × (5 + 55) s = 12 h
//
//   asynchronous: one coroutine per board on one event loop; the master's
//   move is CPU work that holds the loop, the opponent's reply is an await
//     board 1  M.......(await)........M.......
//     board 2   M.......(await)........M......
//     ...       the master is the only bottleneck: 30 × 24 × 5 s ≈ 1 h
//
// The clock is scaled: one simulated second is --scale microseconds of real
// time (100 by default), so the whole program runs in about 5 s. The master's
// move really burns the CPU for its scaled duration, and the opponent's reply
// really waits (a blocking sleep in the synchronous version, a timer on the
// loop in the asynchronous one). The last two lines are the measured times in
// simulated hours.
//
// With --svg FILE it also draws both exhibitions, one above the other on the
// same time axis, from a trace of the run (simul::trace): a lane per board,
// the master's moves as bars, the opponents' replies as thin waits.

#include <simul/loop.hpp>
#include <simul/trace.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::microseconds;

constexpr int opponents = 24;
constexpr int move_pairs = 30;
constexpr int master_seconds = 5;
constexpr int opponent_seconds = 55;

struct scaled_clock {
  int us_per_second = 100;

  microseconds operator()(int simulated_seconds) const { return microseconds(simulated_seconds * us_per_second); }
  double hours(clock_type::duration real) const {
    const double real_us = std::chrono::duration<double, std::micro>(real).count();
    return real_us / us_per_second / 3600.0;
  }
};

/// The master thinks: CPU work for the given real duration. It holds the
/// thread it runs on, whatever that thread is.
void master_moves(microseconds think) {
  const auto until = clock_type::now() + think;
  volatile unsigned long position = 0;
  while (clock_type::now() < until) {
    position = position * 6364136223846793005UL + 1442695040888963407UL;
  }
}

double synchronous(const scaled_clock& scale) {
  const auto start = clock_type::now();
  for (int board = 0; board < opponents; ++board) {
    const auto lane = "board " + std::to_string(board + 1);
    for (int pair = 0; pair < move_pairs; ++pair) {
      {
        const simul::trace::span move(lane); // a lane per board in the picture (free when not tracing)
        master_moves(scale(master_seconds));
      }
      const simul::trace::span reply(lane, true);
      std::this_thread::sleep_for(scale(opponent_seconds)); // the master just waits
    }
  }
  return scale.hours(clock_type::now() - start);
}

simul::task<int> play(int board, scaled_clock scale) {
  for (int pair = 0; pair < move_pairs; ++pair) {
    master_moves(scale(master_seconds));            // holds the loop: no other board moves meanwhile
    co_await simul::sleep(scale(opponent_seconds)); // the loop moves on to the next board
  }
  co_return board;
}

simul::task<double> asynchronous(scaled_clock scale) {
  const auto start = clock_type::now();
  std::vector<simul::task_handle<int>> games;
  for (int board = 0; board < opponents; ++board) {
    games.push_back(simul::create_task(play(board, scale), "board " + std::to_string(board + 1)));
  }
  const std::vector<int> finished = co_await simul::gather(std::move(games));
  std::printf("asynchronous: %zu games finished\n", finished.size());
  co_return scale.hours(clock_type::now() - start);
}

} // namespace

int main(int argc, char** argv) {
  scaled_clock scale;
  std::string svg;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--scale" && i + 1 < argc) {
      scale.us_per_second = std::atoi(argv[++i]);
    } else if (arg == "--svg" && i + 1 < argc) {
      svg = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--scale MICROSECONDS_PER_SIMULATED_SECOND] [--svg FILE]\n", argv[0]);
      return 2;
    }
  }
  if (scale.us_per_second <= 0) {
    std::fprintf(stderr, "chess_exhibition: --scale must be a positive number of microseconds\n");
    return 2;
  }
  std::printf("%d opponents, master %d s per move, opponents %d s, %d move pairs; 1 s = %d us\n", opponents,
              master_seconds, opponent_seconds, move_pairs, scale.us_per_second);
  if (!svg.empty()) {
    simul::trace::start();
  }
  const double sync_hours = synchronous(scale);
  auto sync_trace = simul::trace::collect();
  simul::trace::clear();
  const double async_hours = simul::run(asynchronous(scale));
  if (!svg.empty()) {
    simul::trace::stop();
    try {
      simul::trace::write_svg(svg, {{"synchronous: one game after another", std::move(sync_trace)},
                                    {"asynchronous: one task per board on one loop", simul::trace::collect()}});
    } catch (const simul::error& e) {
      std::fprintf(stderr, "chess_exhibition: %s\n", e.what());
      return 1;
    }
    std::printf("wrote %s\n", svg.c_str());
  }
  std::printf("synchronous: %.2f h\n", sync_hours);
  std::printf("asynchronous: %.2f h\n", async_hours);
  // Ideally 12 h against 1 h. A busy machine stretches both (the loop thread
  // waits for a core between moves), but the asynchronous exhibition must
  // stay far shorter, or the program did not overlap the games.
  if (async_hours * 2 >= sync_hours) {
    std::fprintf(stderr, "chess_exhibition: the asynchronous exhibition did not overlap the games\n");
    return 1;
  }
  return 0;
}
