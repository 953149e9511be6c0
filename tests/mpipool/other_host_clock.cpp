// Rank 2 claims another kernel boot, standing for a rank on another host:
// rank 0 must treat its clock as a different one (same_clock false) and
// move its traced slices by the estimated offset; rank 1 shares rank 0's
// clock. Every rank in fact runs here, so the true offset is 0 and the
// estimate, off by at most half its round trip, keeps each slice within
// one round trip of its task's submit -> complete window. Prints "PASS".

#include <simul/mpipool.hpp>
#include <simul/trace.hpp>

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace simul::detail {
void fake_boot_id_for_tests(const std::string& id);
} // namespace simul::detail

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int nap_on_rank(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int fail(const std::string& why) {
  std::printf("FAIL: %s\n", why.c_str());
  return 1;
}

int client(simul::mpi_pool& pool) {
  const auto near = pool.clock_estimate(1);
  const auto far = pool.clock_estimate(2);
  if (!near.same_clock || far.same_clock) {
    return fail("rank 1 should share rank 0's clock and rank 2 should not");
  }
  if (std::abs(far.offset.count()) > far.round_trip.count() / 2 + 1) {
    return fail("rank 2's offset " + std::to_string(far.offset.count()) + " ns is outside half its round trip " +
                std::to_string(far.round_trip.count()) + " ns");
  }
  simul::trace::start();
  const auto before = now_ns();
  std::vector<simul::future<int>> tasks;
  for (int i = 0; i < 6; ++i) {
    tasks.push_back(pool.submit(nap_on_rank, 2));
  }
  int on_far = 0;
  for (auto& t : tasks) {
    on_far += t.get() == 2 ? 1 : 0;
  }
  const auto after = now_ns();
  simul::trace::stop();
  const std::string lane_name = "rank 2 @ " + pool.host(2);
  const auto slack = far.round_trip.count();
  for (const auto& lane : simul::trace::collect().lanes) {
    if (lane.name != lane_name) {
      continue;
    }
    if (static_cast<int>(lane.slices.size()) != on_far) {
      return fail(std::to_string(lane.slices.size()) + " slices on " + lane_name + " for " + std::to_string(on_far) +
                  " tasks");
    }
    for (const auto& s : lane.slices) {
      if (s.begin < before - slack || s.end > after + slack) {
        return fail("a slice of rank 2 lies outside its window by more than a round trip");
      }
    }
    std::printf("PASS: rank 2 offset %lld ns (round trip %lld ns), %d slices on its lane\n",
                static_cast<long long>(far.offset.count()), static_cast<long long>(far.round_trip.count()), on_far);
    return 0;
  }
  return on_far == 0 ? fail("no task ran on rank 2") : fail("no lane " + lane_name);
}

} // namespace

int main(int argc, char** argv) {
  int rank = -1;
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 2) {
    simul::detail::fake_boot_id_for_tests("00000000-0000-0000-0000-000000000000");
  }
  int status = 1;
  {
    simul::mpi_pool pool(argc, argv); // worker ranks serve in here, then exit
    status = client(pool);
  }
  MPI_Finalize();
  return status;
}
