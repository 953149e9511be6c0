// The recorder: nothing while off, spans on their lanes, the ring's bound and
// its dropped-events mark, clear, bad options, and recording from several
// threads while another starts, stops and writes (for TSan).

#include "trace_test_util.hpp"

#include <simul/trace.hpp>
#include <simul/trace/detail/recorder.hpp>

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

namespace {

using simul::trace::slice;
using trace_test::find_lane;
using trace_test::run_names;

int this_tid() { return static_cast<int>(::syscall(SYS_gettid)); }

TEST(TraceRecorder, RecordsNothingWhileOff) {
  simul::trace::start();
  simul::trace::stop();
  EXPECT_FALSE(simul::trace::enabled());
  { const simul::trace::span s("while off"); }
  EXPECT_TRUE(simul::trace::collect().lanes.empty());
}

TEST(TraceRecorder, SpansGoOnTheThreadLaneAndTheirOwnLane) {
  simul::trace::start();
  EXPECT_TRUE(simul::trace::enabled());
  { const simul::trace::span a("board 1"); }
  { const simul::trace::span w("board 1", true); }
  { const simul::trace::span b("board 2"); }
  simul::trace::stop();
  const auto t = simul::trace::collect();
  const auto* thread = trace_test::find_thread(t, this_tid());
  ASSERT_NE(thread, nullptr);
  EXPECT_EQ(run_names(t, *thread), (std::vector<std::string>{"board 1", "board 2"}));
  const auto* board1 = find_lane(t, "board 1");
  ASSERT_NE(board1, nullptr);
  ASSERT_EQ(board1->slices.size(), 2U);
  EXPECT_EQ(board1->slices[0].what, slice::kind::run);
  EXPECT_EQ(board1->slices[1].what, slice::kind::wait);
  EXPECT_LE(board1->slices[0].end, board1->slices[1].begin);
  EXPECT_LE(t.begin, board1->slices[0].begin);
  EXPECT_GE(t.end, board1->slices[1].end);
}

TEST(TraceRecorder, AFullRingKeepsTheNewestAndSaysHowManyWereDropped) {
  simul::trace::start({.events_per_thread = 16});
  int tid = 0;
  std::thread([&] { // a new thread: a ring of the new size
    tid = this_tid();
    for (int i = 0; i < 40; ++i) {
      const simul::trace::span s("n" + std::to_string(i));
    }
  })
      .join();
  simul::trace::stop();
  const auto t = simul::trace::collect();
  simul::trace::start(); // back to the default size for the other tests
  simul::trace::stop();
  const auto* lane = trace_test::find_thread(t, tid);
  ASSERT_NE(lane, nullptr);
  std::vector<std::string> names = run_names(t, *lane);
  ASSERT_EQ(names.size(), 16U);
  EXPECT_EQ(names.front(), "n24");
  EXPECT_EQ(names.back(), "n39");
  int marks = 0;
  for (const auto& s : lane->slices) {
    if (s.what == slice::kind::dropped) {
      ++marks;
      EXPECT_EQ(s.name, "dropped 24 events");
    }
  }
  EXPECT_EQ(marks, 1);
}

TEST(TraceRecorder, StartAndClearDiscardWhatWasRecorded) {
  simul::trace::start();
  { const simul::trace::span s("old"); }
  simul::trace::clear();
  { const simul::trace::span s("new"); }
  simul::trace::stop();
  auto t = simul::trace::collect();
  EXPECT_EQ(find_lane(t, "old"), nullptr);
  EXPECT_NE(find_lane(t, "new"), nullptr);
  simul::trace::start();
  simul::trace::stop();
  EXPECT_TRUE(simul::trace::collect().lanes.empty());
}

TEST(TraceRecorder, NamedRemoteLanesKeepTheirNamesAcrossStarts) {
  // Registered once (as an MPI pool does at its handshake), before tracing starts.
  const auto first = simul::detail::trace_remote_lane(4242, "rank 1 @ far");
  const auto second = simul::detail::trace_remote_lane(4242, "rank 2 @ farther"); // same pid, another host
  ASSERT_NE(first, 0U);
  ASSERT_NE(second, first);
  simul::trace::start();
  simul::detail::trace_rank_run(first, 100, 200);
  simul::detail::trace_rank_run(second, 150, 250);
  simul::detail::trace_rank_run(first, 300, 400);
  simul::detail::trace_rank_run(0, 300, 400);      // no lane: not recorded
  simul::detail::trace_worker_run(4242, 500, 600); // the pid's own lane stays apart
  simul::trace::stop();
  simul::detail::trace_rank_run(first, 700, 800); // off: not recorded
  const auto t = simul::trace::collect();
  const auto* one = find_lane(t, "rank 1 @ far");
  const auto* two = find_lane(t, "rank 2 @ farther");
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  ASSERT_EQ(one->slices.size(), 2U);
  EXPECT_EQ(one->pid, 4242);
  EXPECT_EQ(one->tid, 0);
  EXPECT_EQ(one->slices[0].begin, 100);
  EXPECT_EQ(one->slices[1].end, 400);
  ASSERT_EQ(two->slices.size(), 1U);
  EXPECT_EQ(two->slices[0].begin, 150);
  const auto* own = find_lane(t, "worker process 4242");
  ASSERT_NE(own, nullptr);
  EXPECT_EQ(own->slices.size(), 1U);
}

TEST(TraceRecorder, RejectsATinyRing) {
  EXPECT_THROW(simul::trace::start({.events_per_thread = 15}), simul::error);
  EXPECT_FALSE(simul::trace::enabled());
}

TEST(TraceRecorder, ThreadsRecordWhileAnotherStartsStopsAndWrites) {
  std::atomic<bool> done{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < 3; ++w) {
    writers.emplace_back([&, w] {
      while (!done.load(std::memory_order_relaxed)) {
        const simul::trace::span s("writer " + std::to_string(w));
      }
    });
  }
  const auto path = trace_test::temp_file("stress.json");
  for (int round = 0; round < 20; ++round) {
    simul::trace::start({.events_per_thread = 64});
    while (simul::trace::collect().lanes.empty()) {
      std::this_thread::yield();
    }
    simul::trace::write_json(path);
    simul::trace::stop();
    simul::trace::clear();
  }
  done = true;
  for (auto& t : writers) {
    t.join();
  }
  simul::trace::start();
  simul::trace::stop();
  EXPECT_EQ(trace_test::check_file("json", path), 0);
  std::remove(path.c_str());
}

} // namespace
