// simul::trace across MPI ranks: each task's run, measured on the worker
// rank, drawn on that rank's lane on rank 0 and inside the task's window on
// rank 0's clock; and the clock estimate the handshake makes. Run under
// mpirun with 3 ranks (2 workers).

#include <simul/mpipool.hpp>
#include <simul/trace.hpp>

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mpipool_test.hpp"

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Runs on a worker rank: naps, then says which rank it ran on.
int nap_then_rank(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

const simul::trace::lane* lane_named(const simul::trace::timeline& t, const std::string& name) {
  for (const auto& l : t.lanes) {
    if (l.name == name) {
      return &l;
    }
  }
  return nullptr;
}

std::string rank_lane(const simul::mpi_pool& pool, int r) { return "rank " + std::to_string(r) + " @ " + pool.host(r); }

TEST(MpiPoolTrace, EachTaskRunsOnTheLaneOfItsRankInsideItsWindow) {
  simul::mpi_pool pool({.keep_ranks = true});
  constexpr int n = 12;
  std::array<std::int64_t, n> submitted{};
  std::array<std::atomic<std::int64_t>, n> completed{};
  std::vector<simul::future<int>> futures;
  simul::trace::start();
  for (int i = 0; i < n; ++i) {
    submitted[static_cast<std::size_t>(i)] = now_ns();
    futures.push_back(pool.submit(nap_then_rank, 2));
    futures.back().on_ready([&completed, i] { completed[static_cast<std::size_t>(i)].store(now_ns()); });
  }
  std::vector<int> ran_on;
  for (auto& f : futures) {
    ran_on.push_back(f.get());
  }
  for (const auto& c : completed) { // the callbacks run on the progress thread, around get()
    while (c.load() == 0) {
      std::this_thread::yield();
    }
  }
  simul::trace::stop();
  const auto timeline = simul::trace::collect();
  int seen = 0;
  for (int r = 1; r <= 2; ++r) {
    const auto* lane = lane_named(timeline, rank_lane(pool, r));
    ASSERT_NE(lane, nullptr) << "no lane " << rank_lane(pool, r);
    // A rank runs its tasks in the order they were sent, which is submit order.
    std::vector<int> tasks;
    for (int i = 0; i < n; ++i) {
      if (ran_on[static_cast<std::size_t>(i)] == r) {
        tasks.push_back(i);
      }
    }
    ASSERT_EQ(lane->slices.size(), tasks.size()) << "rank " << r;
    for (std::size_t k = 0; k < tasks.size(); ++k) {
      const auto i = static_cast<std::size_t>(tasks[k]);
      const auto& s = lane->slices[k];
      EXPECT_EQ(s.what, simul::trace::slice::kind::run);
      EXPECT_GE(s.end - s.begin, 2'000'000) << "the 2 ms nap is inside the slice";
      EXPECT_LE(submitted[i], s.begin) << "task " << i << " on rank " << r;
      EXPECT_LE(s.end, completed[i].load()) << "task " << i << " on rank " << r;
      ++seen;
    }
  }
  EXPECT_EQ(seen, n);
  EXPECT_EQ(std::count(ran_on.begin(), ran_on.end(), 1) + std::count(ran_on.begin(), ran_on.end(), 2), n);

  // Off, nothing more is recorded.
  simul::trace::clear();
  EXPECT_EQ(pool.submit(nap_then_rank, 0).get() > 0, true);
  EXPECT_EQ(lane_named(simul::trace::collect(), rank_lane(pool, 1)), nullptr);
  EXPECT_EQ(lane_named(simul::trace::collect(), rank_lane(pool, 2)), nullptr);
}

TEST(MpiPoolTrace, ATracedMapPutsEachChunkOnItsRanksLaneAndInTheJson) {
  simul::mpi_pool pool({.keep_ranks = true});
  const std::vector<int> naps(10, 1);
  simul::trace::start();
  const auto before = now_ns();
  const auto ranks = pool.map(nap_then_rank, naps, {.chunksize = 1});
  const auto after = now_ns();
  simul::trace::stop();
  const auto timeline = simul::trace::collect();
  for (int r = 1; r <= 2; ++r) {
    const auto* lane = lane_named(timeline, rank_lane(pool, r));
    const auto expected = static_cast<std::size_t>(std::count(ranks.begin(), ranks.end(), r));
    ASSERT_EQ(lane != nullptr ? lane->slices.size() : 0, expected) << "rank " << r;
    for (const auto& s : lane != nullptr ? lane->slices : std::vector<simul::trace::slice>{}) {
      EXPECT_LE(before, s.begin);
      EXPECT_LE(s.end, after);
    }
  }
  const std::string path = testing::TempDir() + "mpipool_trace.json";
  simul::trace::write_json(path);
  std::ifstream in(path);
  const std::string json{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_NE(json.find("\"" + rank_lane(pool, 1) + "\""), std::string::npos);
  std::remove(path.c_str());
}

// Runs on a worker rank: its rank, times 2, plus 1 if it is tracing.
int rank_and_tracing() {
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return nap_then_rank(0) * 2 + (simul::trace::enabled() ? 1 : 0);
}

// ctest starts the shared-memory launch with SIMUL_TRACE set, and mpirun
// hands it to every rank: only rank 0 may trace and write the file.
TEST(MpiPoolTrace, WorkerRanksDoNotTraceEvenWithSimulTraceSet) {
  simul::mpi_pool pool({.keep_ranks = true});
  simul::trace::start();
  std::vector<simul::future<int>> answers; // together: both ranks get some
  for (int i = 0; i < 6; ++i) {
    answers.push_back(pool.submit(rank_and_tracing));
  }
  std::set<int> ranks;
  for (auto& f : answers) {
    const int answer = f.get();
    EXPECT_EQ(answer % 2, 0) << "rank " << answer / 2 << " is tracing";
    ranks.insert(answer / 2);
  }
  simul::trace::stop();
  EXPECT_EQ(ranks, (std::set<int>{1, 2}));
}

TEST(MpiPoolTrace, TheClockEstimateIsWithinItsRoundTrip) {
  simul::mpi_pool pool({.keep_ranks = true});
  for (int r = 1; r < pool.size(); ++r) {
    const auto estimate = pool.clock_estimate(r);
    EXPECT_GT(estimate.round_trip.count(), 0) << "rank " << r;
    // One host shares CLOCK_MONOTONIC: the true offset is 0, and the estimate
    // is off by at most half the round trip it came from.
    EXPECT_TRUE(estimate.same_clock) << "rank " << r << " (the tests run on one host)";
    EXPECT_LE(std::abs(estimate.offset.count()), estimate.round_trip.count() / 2 + 1) << "rank " << r;
    std::printf("[ clock    ] rank %d: offset %lld ns, round trip %lld ns\n", r,
                static_cast<long long>(estimate.offset.count()), static_cast<long long>(estimate.round_trip.count()));
  }
  EXPECT_THROW((void)pool.clock_estimate(0), std::out_of_range);
  EXPECT_THROW((void)pool.clock_estimate(pool.size()), std::out_of_range);
}

} // namespace
