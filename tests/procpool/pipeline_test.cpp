// Batching and pipelining: several tasks travel to a worker in one write and
// wait in its socket while it runs the first. None of that may blur crash
// isolation: when a worker dies, the task it was running fails, the tasks it
// finished before keep their results, and the tasks it had not started go to
// another worker. Recycling never hands a worker more tasks than it may run,
// and descriptors (memfd payloads) stay with their own frames in a batch.

#include <simul/procpool.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

int my_pid() { return static_cast<int>(::getpid()); }
std::pair<int, int> square_and_pid(int x) { return {x * x, static_cast<int>(::getpid())}; }
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int segfault(int) {
  ::signal(SIGSEGV, SIG_DFL); // the default action, so a sanitizer does not report it
  ::raise(SIGSEGV);
  return 0;
}
std::string shout(std::string text, int n) { return text + std::to_string(n); }
int twice(int x) { return 2 * x; }

template <class... Strings>
std::size_t total_size(Strings... texts) {
  return (texts.size() + ...);
}

/// Submits total_size with `N` strings, each big enough for its own memfd.
template <std::size_t... I>
simul::future<std::size_t> submit_strings(simul::process_pool& procs, std::index_sequence<I...>) {
  return procs.submit(&total_size<decltype((void)I, std::string{})...>, ((void)I, std::string(100, 'x'))...);
}

/// Runs `submit_all` on the pool's I/O thread (in a continuation), so every
/// task it submits is queued before the I/O thread dispatches again: they
/// leave in as few batches as the pipeline depth allows.
template <class F>
void submit_in_one_go(simul::process_pool& procs, F submit_all) {
  std::promise<void> done;
  procs.submit(twice, 0).on_ready([&] {
    submit_all();
    done.set_value();
  });
  done.get_future().wait();
}

} // namespace

TEST(ProcessPoolPipeline, AKilledWorkerFailsOnlyItsRunningTaskOfManyInFlight) {
  simul::process_pool procs({.workers = 1, .pipeline_depth = 16});
  const int first_pid = procs.submit(my_pid).get();
  // Finished before the kill, running at the kill, and sent ahead behind it.
  std::vector<simul::future<std::pair<int, int>>> before;
  for (int i = 0; i < 3; ++i) {
    before.push_back(procs.submit(square_and_pid, i));
  }
  auto victim = procs.submit(sleep_ms, 10000);
  std::vector<simul::future<std::pair<int, int>>> behind;
  for (int i = 0; i < 12; ++i) {
    behind.push_back(procs.submit(square_and_pid, 100 + i));
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(before[i].get(), std::make_pair(i * i, first_pid));
  }
  std::this_thread::sleep_for(100ms); // the victim is running; the others wait in the socket
  ASSERT_EQ(::kill(first_pid, SIGKILL), 0);
  try {
    victim.get();
    ADD_FAILURE() << "the victim returned a value";
  } catch (const simul::worker_crashed& e) {
    EXPECT_EQ(e.pid(), first_pid);
    EXPECT_EQ(e.signal(), SIGKILL);
  }
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(behind[i].wait_for(20s));
    const auto [value, pid] = behind[i].get();
    EXPECT_EQ(value, (100 + i) * (100 + i));
    EXPECT_NE(pid, first_pid) << "task " << i << " ran on the dead worker";
  }
  EXPECT_EQ(procs.stats().crashed, 1U);
  EXPECT_EQ(procs.stats().completed, 1U + 3U + 12U);
}

TEST(ProcessPoolPipeline, ATaskThatCrashesInTheMiddleOfABatchFailsAlone) {
  simul::process_pool procs({.workers = 1, .pipeline_depth = 32});
  ASSERT_EQ(procs.submit(twice, 1).get(), 2);
  for (int round = 0; round < 3; ++round) {
    std::vector<simul::future<int>> futures;
    submit_in_one_go(procs, [&] {
      for (int i = 0; i < 20; ++i) {
        futures.push_back(i == 9 ? procs.submit(segfault, i) : procs.submit(twice, i));
      }
    });
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE(futures[i].wait_for(20s)) << "round " << round << " task " << i;
      if (i == 9) {
        EXPECT_THROW(futures[i].get(), simul::worker_crashed);
      } else {
        EXPECT_EQ(futures[i].get(), 2 * i) << "round " << round << " task " << i;
      }
    }
  }
  EXPECT_EQ(procs.stats().crashed, 3U);
  EXPECT_EQ(procs.stats().completed, 1U + 3U * 20U); // 19 a round, and submit_in_one_go's own
}

TEST(ProcessPoolPipeline, RecyclingNeverSendsAWorkerMoreThanItMayRun) {
  for (const std::size_t limit : {std::size_t{1}, std::size_t{3}}) {
    simul::process_pool procs({.workers = 2, .max_tasks_per_child = limit, .pipeline_depth = 16});
    std::vector<simul::future<int>> futures;
    for (int i = 0; i < 30; ++i) {
      futures.push_back(procs.submit(my_pid));
    }
    std::map<int, std::size_t> per_pid;
    for (auto& f : futures) {
      ASSERT_TRUE(f.wait_for(20s)) << "recycling stalled the queue";
      ++per_pid[f.get()];
    }
    for (const auto& [pid, count] : per_pid) {
      EXPECT_LE(count, limit) << "worker " << pid;
    }
    EXPECT_GE(per_pid.size(), 30 / limit);
    EXPECT_EQ(procs.stats().crashed, 0U);
    EXPECT_EQ(procs.stats().completed, 30U);
  }
}

TEST(ProcessPoolPipeline, DescriptorsStayWithTheirFramesInABigBatch) {
  // Every string argument and result goes through its own memfd; more than
  // one write's worth of descriptors (64) go to the worker in one batch, mixed
  // with tasks that carry none.
  simul::process_pool procs({.workers = 1, .shm_threshold = 64, .pipeline_depth = 200});
  ASSERT_EQ(procs.submit(twice, 0).get(), 0);
  std::vector<simul::future<std::string>> texts;
  std::vector<simul::future<int>> numbers;
  submit_in_one_go(procs, [&] {
    for (int i = 0; i < 150; ++i) {
      texts.push_back(procs.submit(shout, std::string(100 + i, static_cast<char>('a' + i % 26)), i));
      numbers.push_back(procs.submit(twice, i));
    }
  });
  for (int i = 0; i < 150; ++i) {
    ASSERT_TRUE(texts[i].wait_for(20s));
    EXPECT_EQ(texts[i].get(), std::string(100 + i, static_cast<char>('a' + i % 26)) + std::to_string(i));
    EXPECT_EQ(numbers[i].get(), 2 * i);
  }
  EXPECT_EQ(procs.stats().crashed, 0U);
}

TEST(ProcessPoolPipeline, DepthOneSendsOnlyToIdleWorkers) {
  simul::process_pool procs({.workers = 1, .pipeline_depth = 1});
  auto slow = procs.submit(sleep_ms, 300);
  auto next = procs.submit(twice, 21);
  std::this_thread::sleep_for(100ms);
  // Not sent ahead: still pending in the parent, so it can be cancelled.
  EXPECT_TRUE(next.cancel());
  EXPECT_EQ(slow.get(), 300);
  EXPECT_EQ(procs.submit(twice, 4).get(), 8);
}

TEST(ProcessPoolPipeline, ConcurrentSyncSubmittersEachGetTheirOwnAnswer) {
  // An idle worker is offered to submitters while the I/O thread sleeps: the
  // first submitter to find it writes its task straight to the worker's
  // socket. Several threads racing for the offers, and for the I/O thread,
  // must each get their own answer, and nothing may be lost or run twice.
  simul::process_pool procs({.workers = 2});
  constexpr int k_threads = 4;
  constexpr int k_rounds = 300;
  std::vector<std::thread> threads;
  std::vector<int> wrong(k_threads, 0);
  for (int t = 0; t < k_threads; ++t) {
    threads.emplace_back([&procs, &wrong, t] {
      for (int i = 0; i < k_rounds; ++i) {
        const int x = t * 100000 + i;
        if (procs.submit(twice, x).get() != 2 * x) {
          ++wrong[t];
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  for (int t = 0; t < k_threads; ++t) {
    EXPECT_EQ(wrong[t], 0) << "thread " << t;
  }
  EXPECT_EQ(procs.stats().submitted, static_cast<std::uint64_t>(k_threads * k_rounds));
  EXPECT_EQ(procs.stats().completed, static_cast<std::uint64_t>(k_threads * k_rounds));
}

TEST(ProcessPoolPipeline, ATaskWrittenStraightToAnIdleWorkerSurvivesShutdownAndCrashes) {
  simul::process_pool procs({.workers = 1});
  ASSERT_EQ(procs.submit(twice, 1).get(), 2);
  std::this_thread::sleep_for(20ms); // the I/O thread is asleep and has offered the idle worker
  EXPECT_THROW(procs.submit(segfault, 0).get(), simul::worker_crashed);
  ASSERT_EQ(procs.submit(twice, 2).get(), 4); // the replacement serves
  std::this_thread::sleep_for(20ms);
  auto last = procs.submit(sleep_ms, 100);
  procs.shutdown({.wait = true});
  EXPECT_EQ(last.get(), 100);
  EXPECT_EQ(procs.stats().crashed, 1U);
}

TEST(ProcessPoolPipeline, ATaskWithMoreMemfdsThanOneWriteCarriesIsRefusedAtSubmit) {
  simul::process_pool procs({.workers = 1, .shm_threshold = 64});
  // 64 descriptors fit in one write; 65 cannot travel, and say so at once.
  EXPECT_EQ(submit_strings(procs, std::make_index_sequence<64>{}).get(), 6400U);
  EXPECT_THROW(submit_strings(procs, std::make_index_sequence<65>{}), simul::serialization_error);
  EXPECT_EQ(submit_strings(procs, std::make_index_sequence<3>{}).get(), 300U);
  EXPECT_EQ(procs.stats().crashed, 0U);
}

namespace {
/// CPU time (user + system, in clock ticks) a process has used so far.
long cpu_ticks(int pid) {
  std::FILE* stat = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (stat == nullptr) {
    return -1;
  }
  char line[1024] = {};
  const bool read = std::fgets(line, sizeof(line), stat) != nullptr;
  std::fclose(stat);
  if (!read) {
    return -1;
  }
  // Fields 14 and 15 (utime, stime) follow the ")" that ends the command name.
  const char* at = std::strrchr(line, ')');
  long utime = 0;
  long stime = 0;
  if (at == nullptr ||
      std::sscanf(at + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime) != 2) {
    return -1;
  }
  return utime + stime;
}
} // namespace

TEST(ProcessPoolPipeline, AnIdleWorkerLooksForWorkOnlyForItsSpinAndThenSleeps) {
  // A long spin, so that a worker that never stopped spinning would show
  // hundreds of milliseconds of CPU over the quiet period below.
  simul::process_pool procs({.workers = 1, .worker_spin = 20ms});
  ASSERT_EQ(procs.submit(twice, 1).get(), 2);
  const int pid = procs.worker_pids().at(0);
  std::this_thread::sleep_for(100ms); // past the spin
  const long before = cpu_ticks(pid);
  std::this_thread::sleep_for(500ms);
  const long after = cpu_ticks(pid);
  ASSERT_GE(before, 0);
  const long hz = ::sysconf(_SC_CLK_TCK);
  EXPECT_LE(after - before, hz / 20) << "an idle worker kept using the CPU"; // ≤ 50 ms of 500
  // Spinning or not, tasks arriving at any moment are served.
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(procs.submit(twice, i).get(), 2 * i);
    std::this_thread::sleep_for(std::chrono::microseconds(i * 500));
  }
}

TEST(ProcessPoolPipeline, AWorkerWithoutSpinSleepsAtOnceAndStillServes) {
  simul::process_pool procs({.workers = 2, .worker_spin = 0us});
  std::vector<simul::future<int>> futures;
  for (int i = 0; i < 200; ++i) {
    futures.push_back(procs.submit(twice, i));
  }
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(futures[i].get(), 2 * i);
  }
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(procs.submit(twice, i).get(), 2 * i);
  }
}
