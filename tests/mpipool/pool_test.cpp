// mpi_pool on rank 0: submit / map / imap, the executor interface, errors,
// shutdown and stats. Run under mpirun with 3 ranks (2 workers).

#include <simul/mpipool.hpp>

#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <map>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mpipool_test.hpp"

using namespace std::chrono_literals;

namespace {

simul::mpi_pool_options reusable(simul::mpi_pool_options options = {}) {
  options.keep_ranks = true;
  return options;
}

int square(int x) { return x * x; }
int worker_pid() { return static_cast<int>(::getpid()); }
std::string shout(std::string text, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) {
    out += text + "!";
  }
  return out;
}
std::vector<double> scale(std::vector<double> values, double by) {
  for (auto& v : values) {
    v *= by;
  }
  return values;
}
std::map<std::string, int> count_words(std::vector<std::string> words) {
  std::map<std::string, int> counts;
  for (auto& w : words) {
    ++counts[w];
  }
  return counts;
}
int refuse(int x) {
  if (x < 0) {
    throw std::invalid_argument("negative input " + std::to_string(x));
  }
  return x;
}
int nap_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
std::string host_name() {
  char name[64] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

// A value whose save always throws: its result cannot be sent back.
struct unsendable {
  int value = 0;
  template <class Archive>
  void save(Archive&) const {
    throw std::runtime_error("this value refuses to be saved");
  }
  template <class Archive>
  void load(Archive&) {}
};
unsendable make_unsendable(int x) { return unsendable{x}; }

TEST(MpiPool, TheJobHasTwoWorkerRanks) {
  ASSERT_EQ(simul_test::job_size, 3) << "run under mpirun -n 3";
  simul::mpi_pool pool(reusable());
  EXPECT_EQ(pool.rank(), 0);
  EXPECT_EQ(pool.size(), 3);
  EXPECT_EQ(pool.workers(), 2U);
  EXPECT_EQ(pool.host(0), host_name());
  EXPECT_EQ(pool.host(2), host_name()); // one machine stands in for the cluster
}

TEST(MpiPool, SubmitRunsOnAWorkerRankAndReturnsTheValue) {
  simul::mpi_pool pool(reusable());
  EXPECT_EQ(pool.submit(square, 7).get(), 49);
  EXPECT_EQ(pool.submit([](int a, int b) { return a - b; }, 10, 3).get(), 7);
  EXPECT_NE(pool.submit(worker_pid).get(), static_cast<int>(::getpid()));
  EXPECT_EQ(pool.submit(shout, std::string("hey"), 2).get(), "hey!hey!");
  EXPECT_EQ(pool.submit(scale, std::vector<double>{1.5, -2}, 2.0).get(), (std::vector<double>{3, -4}));
  const auto counts = pool.submit(count_words, std::vector<std::string>{"a", "b", "a"}).get();
  EXPECT_EQ(counts.at("a"), 2);
  EXPECT_EQ(counts.at("b"), 1);
  pool.submit([] {}).get(); // void tasks too
}

TEST(MpiPool, TasksSpreadOverEveryWorkerRank) {
  simul::mpi_pool pool(reusable({.pipeline_depth = 1}));
  std::vector<simul::future<int>> pids;
  for (int i = 0; i < 8; ++i) {
    pids.push_back(pool.submit([] {
      std::this_thread::sleep_for(20ms);
      return static_cast<int>(::getpid());
    }));
  }
  std::set<int> distinct;
  for (auto& f : pids) {
    distinct.insert(f.get());
  }
  EXPECT_EQ(distinct.size(), 2U);
}

TEST(MpiPool, OneTaskAtATimeStaysOnTheRankThatIsAwake) {
  simul::mpi_pool pool(reusable());
  const int first = pool.submit(worker_pid).get();
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(pool.submit(worker_pid).get(), first) << "task " << i;
  }
}

TEST(MpiPool, ATaskThatStartsAtOnceIsWaitedOnAsleepAndOneQueuedBehindOthersMaySpin) {
  simul::mpi_pool pool(reusable());
  auto waiters_sleep = [](const auto& f) { return simul::detail::future_access::state(f).waiters_sleep(); };
  auto lone = pool.submit(square, 3);
  EXPECT_TRUE(waiters_sleep(lone)); // its answer is a round trip away: the progress thread polls for it
  EXPECT_EQ(lone.get(), 9);
  // Both worker ranks busy: a third task waits behind them, and answers will
  // come close together.
  auto first = pool.submit(nap_ms, 300);
  auto second = pool.submit(nap_ms, 300);
  auto third = pool.submit(square, 4);
  EXPECT_TRUE(waiters_sleep(first));
  EXPECT_TRUE(waiters_sleep(second));
  EXPECT_FALSE(waiters_sleep(third));
  EXPECT_EQ(third.get(), 16);
  EXPECT_EQ(first.get() + second.get(), 600);
}

// On the rank: how many more bytes are in fresh mappings while a block of
// `bytes` is alive (glibc maps blocks that big unless told not to).
[[maybe_unused]] std::uint64_t mapped_for_block(std::size_t bytes) {
  const auto before = ::mallinfo2().hblkhd;
  std::vector<char> block(bytes, 1);
  const auto after = ::mallinfo2().hblkhd;
  std::this_thread::sleep_for(50ms); // the other rank takes the next task meanwhile
  return static_cast<std::uint64_t>(after - before) + (block.back() == 1 ? 0 : 1);
}

TEST(MpiPool, KeepWorkerHeapTakesBigBlocksFromTheHeapWhileThePoolIsOpen) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizers' allocators ignore mallopt and do not report mallinfo2";
#else
  constexpr std::size_t block = std::size_t{40} << 20;
  // On every worker rank (four tasks at once reach both).
  auto on_each_rank = [&](simul::mpi_pool& pool) {
    std::vector<simul::future<std::uint64_t>> futures;
    for (int i = 0; i < 4; ++i) {
      futures.push_back(pool.submit(mapped_for_block, block));
    }
    std::vector<std::uint64_t> mapped;
    for (auto& f : futures) {
      mapped.push_back(f.get());
    }
    return mapped;
  };
  {
    simul::mpi_pool plain(reusable());
    for (const auto mapped : on_each_rank(plain)) {
      EXPECT_GE(mapped, block);
    }
  }
  {
    simul::mpi_pool keeping(reusable({.keep_worker_heap = true}));
    for (const auto mapped : on_each_rank(keeping)) {
      EXPECT_EQ(mapped, 0U);
    }
    std::vector<std::uint8_t> data(5 << 20, 9); // a big payload still round-trips
    EXPECT_EQ(keeping.submit([](std::vector<std::uint8_t> v) { return v; }, data).get(), data);
  }
  {
    simul::mpi_pool after(reusable()); // the ranks' defaults are back
    for (const auto mapped : on_each_rank(after)) {
      EXPECT_GE(mapped, block);
    }
  }
#endif
}

// How the process running a task reads plain functions' ids.
int code_naming_here() { return static_cast<int>(simul::detail::worker_code_naming()); }

TEST(MpiPool, WorkerRanksReadPlainFunctionsAsOffsetsFromTheExecutable) {
  // Rank 0 names a plain function by its offset from the executable's load
  // address, the one id every rank agrees on even when simul is a shared
  // library (a fork pool's anchored ids are relative to simul's own code).
  simul::mpi_pool pool(reusable());
  EXPECT_EQ(pool.submit(code_naming_here).get(), static_cast<int>(simul::detail::code_naming::executable));
  EXPECT_EQ(pool.map(square, std::vector<int>{1, 2, 3}), (std::vector<int>{1, 4, 9}));
}

TEST(MpiPool, MapKeepsInputOrderForEveryChunkSize) {
  simul::mpi_pool pool(reusable());
  std::vector<int> numbers(1000);
  for (int i = 0; i < 1000; ++i) {
    numbers[static_cast<std::size_t>(i)] = i - 500;
  }
  for (std::size_t chunksize : {0, 1, 7, 256, 5000}) {
    const auto squares = pool.map(square, numbers, {.chunksize = chunksize});
    ASSERT_EQ(squares.size(), numbers.size());
    for (std::size_t i = 0; i < numbers.size(); ++i) {
      ASSERT_EQ(squares[i], numbers[i] * numbers[i]) << "chunksize " << chunksize << " item " << i;
    }
  }
  EXPECT_TRUE(pool.map(square, std::vector<int>{}).empty());
  // simul::map asks the pool's own map.
  EXPECT_EQ(simul::map(pool, square, std::vector<int>{2, 3}), (std::vector<int>{4, 9}));
}

TEST(MpiPool, MapRethrowsTheFirstErrorInInputOrder) {
  simul::mpi_pool pool(reusable());
  try {
    (void)pool.map(refuse, std::vector<int>{1, 2, -3, 4, -5}, {.chunksize = 1});
    FAIL() << "map did not throw";
  } catch (const simul::mpi_remote_error& e) {
    EXPECT_EQ(e.message(), "negative input -3");
  }
}

TEST(MpiPool, MapTimesOutAsAWhole) {
  simul::mpi_pool pool(reusable({.pipeline_depth = 1}));
  EXPECT_THROW((void)pool.map(nap_ms, std::vector<int>(6, 100), {.timeout = 50ms}), simul::timeout_error);
}

TEST(MpiPool, ImapYieldsInOrderAndImapUnorderedYieldsEverything) {
  simul::mpi_pool pool(reusable());
  std::vector<int> numbers(300);
  for (int i = 0; i < 300; ++i) {
    numbers[static_cast<std::size_t>(i)] = i;
  }
  std::vector<int> ordered;
  for (int r : pool.imap(square, numbers, {.chunksize = 16, .max_inflight = 3})) {
    ordered.push_back(r);
  }
  ASSERT_EQ(ordered.size(), numbers.size());
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    EXPECT_EQ(ordered[i], numbers[i] * numbers[i]);
  }
  std::multiset<int> unordered;
  for (int r : pool.imap_unordered(square, numbers, {.chunksize = 5})) {
    unordered.insert(r);
  }
  EXPECT_EQ(unordered, std::multiset<int>(ordered.begin(), ordered.end()));
  // An endless input: the range submits only what the consumer reaches.
  int taken = 0;
  for (int r : pool.imap(square, std::views::iota(0), {.chunksize = 4, .max_inflight = 2})) {
    EXPECT_EQ(r, taken * taken);
    if (++taken == 50) {
      break;
    }
  }
}

TEST(MpiPool, AnExceptionArrivesAsRemoteErrorWithRankAndHost) {
  simul::mpi_pool pool(reusable());
  try {
    (void)pool.submit(refuse, -1).get();
    FAIL() << "no exception";
  } catch (const simul::mpi_remote_error& e) {
    EXPECT_EQ(e.type_name(), "std::invalid_argument");
    EXPECT_EQ(e.message(), "negative input -1");
    EXPECT_TRUE(e.rank() == 1 || e.rank() == 2) << e.rank();
    EXPECT_EQ(e.host(), host_name());
    EXPECT_EQ(e.trace(), "rank " + std::to_string(e.rank()) + " on host " + host_name());
  }
  // It is a remote_error like process_pool's, and the pool goes on.
  EXPECT_THROW((void)pool.submit(refuse, -2).get(), simul::remote_error);
  EXPECT_EQ(pool.submit(refuse, 5).get(), 5);
}

TEST(MpiPool, AResultThatCannotBeSentIsAnErrorNotAHang) {
  simul::mpi_pool pool(reusable());
  try {
    (void)pool.submit(make_unsendable, 1).get();
    FAIL() << "no exception";
  } catch (const simul::remote_error& e) {
    EXPECT_EQ(e.type_name(), "simul::serialization_error");
    EXPECT_NE(e.message().find("this value refuses to be saved"), std::string::npos) << e.message();
  }
  EXPECT_EQ(pool.submit(square, 3).get(), 9);
}

// 2 GiB: one byte over the largest count one MPI message takes. In huge
// pages (advised before the fill): 1,024 page faults instead of 524,288.
std::string over_mpis_limit() {
  std::string text;
  text.reserve(std::size_t{1} << 31);
  simul::detail::advise_huge_pages(text.data(), text.capacity());
  text.resize(std::size_t{1} << 31, 'x');
  return text;
}

TEST(MpiPool, AResultOverMpisMessageLimitIsAnErrorAndTheRankServesOn) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer's shadow of a 2 GiB block takes over a minute to fault in here";
#endif
  simul::mpi_pool pool(reusable());
  try {
    (void)pool.submit(over_mpis_limit).get();
    FAIL() << "no exception";
  } catch (const simul::mpi_remote_error& e) {
    EXPECT_EQ(e.type_name(), "simul::serialization_error");
    EXPECT_NE(e.message().find("over MPI's 2 GiB message limit"), std::string::npos) << e.message();
  }
  // Both ranks still serve (four tasks at once reach both).
  std::vector<simul::future<int>> squares;
  for (int i = 0; i < 4; ++i) {
    squares.push_back(pool.submit(square, i));
  }
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(squares[static_cast<std::size_t>(i)].get(), i * i);
  }
}

TEST(MpiPool, ASharedBufferInsideAValueIsRefusedAtSubmit) {
  simul::mpi_pool pool(reusable());
  std::vector<simul::shared_buffer> buffers;
  buffers.push_back(simul::shared_buffer(64));
  try {
    (void)pool.submit([](std::vector<simul::shared_buffer> b) { return b.size(); }, buffers);
    FAIL() << "no exception";
  } catch (const simul::serialization_error& e) {
    EXPECT_NE(std::string(e.what()).find("shared_buffer"), std::string::npos) << e.what();
  }
  EXPECT_EQ(pool.stats().submitted, 0U);
}

TEST(MpiPool, AFunctionOutsideTheExecutableIsRefusedAtSubmit) {
  simul::mpi_pool pool(reusable());
  int (*from_libc)(int) = &::abs;
  EXPECT_THROW((void)pool.submit(from_libc, -3), simul::code_address_error);
  EXPECT_THROW((void)pool.map(from_libc, std::vector<int>{1}), simul::code_address_error);
}

TEST(MpiPool, FuturesWorkWithWaitAsCompletedAndThen) {
  simul::mpi_pool pool(reusable());
  std::vector<simul::future<int>> futures;
  for (int i = 0; i < 10; ++i) {
    futures.push_back(pool.submit(square, i));
  }
  const auto done = simul::wait(futures, simul::return_when::all_completed);
  EXPECT_EQ(done.done.size(), 10U);
  int sum = 0;
  for (auto& f : simul::as_completed(futures)) {
    sum += f.get();
  }
  EXPECT_EQ(sum, 285);
  auto chained = pool.submit(square, 4).then([](int v) { return v + 1; });
  EXPECT_EQ(chained.get(), 17);
}

TEST(MpiPool, ShutdownWaitsForQueuedWorkAndRefusesMore) {
  simul::mpi_pool pool(reusable({.pipeline_depth = 1}));
  std::vector<simul::future<int>> futures;
  for (int i = 0; i < 6; ++i) {
    futures.push_back(pool.submit(nap_ms, 10));
  }
  pool.shutdown({.wait = true});
  EXPECT_TRUE(pool.is_shutdown());
  for (auto& f : futures) {
    EXPECT_TRUE(f.ready());
    EXPECT_EQ(f.get(), 10);
  }
  EXPECT_THROW((void)pool.submit(square, 1), simul::broken_executor);
  pool.shutdown(); // idempotent
  const auto s = pool.stats();
  EXPECT_EQ(s.submitted, 6U);
  EXPECT_EQ(s.completed, 6U);
  EXPECT_EQ(s.in_flight, 0U);
}

TEST(MpiPool, ShutdownWithCancelPendingCancelsWhatWasNotSent) {
  simul::mpi_pool pool(reusable({.pipeline_depth = 1}));
  std::vector<simul::future<int>> futures;
  for (int i = 0; i < 12; ++i) {
    futures.push_back(pool.submit(nap_ms, 30));
  }
  std::this_thread::sleep_for(10ms); // two are on their way
  pool.shutdown({.wait = true, .cancel_pending = true});
  int ran = 0;
  int cancelled = 0;
  for (auto& f : futures) {
    ASSERT_TRUE(f.ready());
    if (f.cancelled()) {
      ++cancelled;
      EXPECT_THROW((void)f.get(), simul::cancelled_error);
    } else {
      EXPECT_EQ(f.get(), 30);
      ++ran;
    }
  }
  EXPECT_GE(ran, 2);
  EXPECT_GE(cancelled, 1);
  EXPECT_EQ(pool.stats().cancelled, static_cast<std::uint64_t>(cancelled));
}

TEST(MpiPool, AFutureCancelledBeforeItIsSentNeverRuns) {
  simul::mpi_pool pool(reusable({.pipeline_depth = 1}));
  auto a = pool.submit(nap_ms, 60);
  auto b = pool.submit(nap_ms, 60);
  auto c = pool.submit(nap_ms, 60); // both ranks are busy: c waits in the queue
  EXPECT_TRUE(c.cancel());
  EXPECT_THROW((void)c.get(), simul::cancelled_error);
  EXPECT_EQ(a.get() + b.get(), 120);
  pool.shutdown();
  EXPECT_EQ(pool.stats().cancelled, 1U);
  EXPECT_EQ(pool.stats().completed, 2U);
}

TEST(MpiPool, PipelineDepthBoundsTheTasksInFlight) {
  simul::mpi_pool pool(reusable({.pipeline_depth = 3}));
  std::vector<simul::future<int>> futures;
  for (int i = 0; i < 30; ++i) {
    futures.push_back(pool.submit(nap_ms, 5));
  }
  std::uint64_t most = 0;
  while (!futures.back().ready()) {
    most = std::max(most, pool.stats().in_flight);
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_LE(most, 6U); // 2 ranks x 3
  EXPECT_GE(most, 2U);
  for (auto& f : futures) {
    EXPECT_EQ(f.get(), 5);
  }
}

TEST(MpiPool, ShutdownWithWaitFromACallbackThrows) {
  simul::mpi_pool pool(reusable());
  std::promise<std::string> seen;
  auto f = pool.submit(nap_ms, 100); // still running when the callback is hooked
  f.on_ready([&] {
    try {
      pool.shutdown({.wait = true});
      seen.set_value("no exception");
    } catch (const simul::error& e) {
      seen.set_value(e.what());
    }
  });
  EXPECT_NE(seen.get_future().get().find("progress thread"), std::string::npos);
  EXPECT_EQ(f.get(), 100);
}

TEST(MpiPool, ATaskTimeoutWithoutIsolateIsRefused) {
  EXPECT_THROW({ simul::mpi_pool refused{reusable({.task_timeout = 1s})}; }, simul::error);
  simul::mpi_pool pool(reusable());
  EXPECT_THROW((void)pool.submit(simul::task_options{.timeout = 1s}, square, 2), simul::error);
  EXPECT_EQ(pool.submit(square, 2).get(), 4);
}

TEST(MpiPool, OnlyOnePoolAtATime) {
  simul::mpi_pool pool(reusable());
  EXPECT_THROW({ simul::mpi_pool second{reusable()}; }, simul::error);
  EXPECT_EQ(pool.submit(square, 5).get(), 25);
}

TEST(MpiPool, BigPayloadsTravelWhole) {
  simul::mpi_pool pool(reusable());
  std::vector<std::uint8_t> big(8u << 20);
  for (std::size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<std::uint8_t>(i * 31);
  }
  const auto back = pool.submit(
                            [](std::vector<std::uint8_t> v) {
                              for (auto& b : v) {
                                b = static_cast<std::uint8_t>(b + 1);
                              }
                              return v;
                            },
                            big)
                        .get();
  ASSERT_EQ(back.size(), big.size());
  for (std::size_t i = 0; i < big.size(); i += 4099) {
    ASSERT_EQ(back[i], static_cast<std::uint8_t>(big[i] + 1));
  }
}

// The string's length if every byte is `c`, else 0.
std::size_t length_if_all(std::string text, char c) {
  return std::all_of(text.begin(), text.end(), [c](char x) { return x == c; }) ? text.size() : 0;
}

TEST(MpiPool, BigTasksOneAfterAnotherReuseABufferAndSendOnlyTheirOwnBytes) {
  simul::mpi_pool pool(reusable());
  // Over 4 MiB a task is big: the second reuses the first one's buffer, and
  // must send its own (shorter) bytes only.
  const std::string a((std::size_t{4} << 20) + 4096, 'a');
  const std::string c((std::size_t{4} << 20) + 100, 'c');
  EXPECT_EQ(pool.submit(length_if_all, a, 'a').get(), a.size());
  EXPECT_EQ(pool.submit(length_if_all, c, 'c').get(), c.size());
  // A big task and a small one in flight together.
  auto big = pool.submit(length_if_all, a, 'a');
  auto small = pool.submit(length_if_all, std::string(10, 'x'), 'x');
  EXPECT_EQ(big.get(), a.size());
  EXPECT_EQ(small.get(), 10U);
}

// `bytes` bytes that depend on `seed` and on their place.
std::vector<std::uint8_t> pattern(std::size_t bytes, int seed) {
  std::vector<std::uint8_t> out(bytes);
  for (std::size_t i = 0; i < bytes; ++i) {
    out[i] = static_cast<std::uint8_t>(i * 13 + static_cast<std::size_t>(seed) * 101 + i / 4096);
  }
  return out;
}
int twice(int x) { return 2 * x; }

// Results of 1 MiB or more leave a worker rank straight from the value's
// memory, as a message of their own after the answer that announces them.
TEST(MpiPool, BigResultsComeBackWholeFromBothRanksAtOnce) {
  simul::mpi_pool pool(reusable());
  // Big results from both ranks, with small answers in between.
  std::vector<simul::future<std::vector<std::uint8_t>>> big;
  std::vector<simul::future<int>> small;
  auto size_of = [](int seed) { return (std::size_t{1} << 20) + static_cast<std::size_t>(seed) * 4097; };
  for (int seed = 0; seed < 6; ++seed) {
    big.push_back(pool.submit(pattern, size_of(seed), seed));
    small.push_back(pool.submit(square, seed));
  }
  for (int seed = 0; seed < 6; ++seed) {
    const auto got = big[static_cast<std::size_t>(seed)].get();
    EXPECT_TRUE(got == pattern(size_of(seed), seed)) << "result " << seed << " came back changed";
    EXPECT_EQ(small[static_cast<std::size_t>(seed)].get(), seed * seed);
  }
  // Just under the threshold (inline) and just at it (apart).
  EXPECT_EQ(pool.submit(shout, std::string((std::size_t{1} << 20) - 2, 'a'), 1).get().size(),
            (std::size_t{1} << 20) - 1);
  EXPECT_EQ(pool.submit(shout, std::string((std::size_t{1} << 20) - 1, 'b'), 1).get(),
            std::string((std::size_t{1} << 20) - 1, 'b') + "!");
  // A map's chunk results (300,000 ints: 1.2 MiB) go apart too.
  std::vector<int> items(600'000);
  std::iota(items.begin(), items.end(), 0);
  const auto doubled = pool.map(twice, items, {.chunksize = 300'000});
  ASSERT_EQ(doubled.size(), items.size());
  for (std::size_t i = 0; i < items.size(); i += 997) {
    ASSERT_EQ(doubled[i], 2 * items[i]);
  }
  EXPECT_EQ(doubled.back(), 2 * items.back());
  EXPECT_EQ(pool.stats().completed, 16U); // 6 + 6 + 2, and the map's two chunks
}

// On the rank: its pid and the bytes glibc holds in mappings of their own (big blocks).
[[maybe_unused]] std::pair<int, std::uint64_t> pid_and_mapped() {
  return {static_cast<int>(::getpid()), static_cast<std::uint64_t>(::mallinfo2().hblkhd)};
}
[[maybe_unused]] std::vector<std::uint8_t> fresh_bytes(std::size_t n) { return std::vector<std::uint8_t>(n, 5); }

TEST(MpiPool, AWorkerRankKeepsNoCopyOfABigResult) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizers' allocators do not report mallinfo2 (and ASan keeps freed blocks in quarantine)";
#else
  simul::mpi_pool pool(reusable());
  constexpr std::size_t big = std::size_t{48} << 20;
  // One task at a time stays on the rank that is awake (OneTaskAtATimeStaysOnTheRankThatIsAwake).
  const auto before = pool.submit(pid_and_mapped).get();
  EXPECT_EQ(pool.submit(fresh_bytes, big).get().size(), big);
  const auto after = pool.submit(pid_and_mapped).get();
  ASSERT_EQ(after.first, before.first) << "the three tasks ran on different ranks";
  // Copied into its answer, the result would leave a buffer its size behind
  // (kept for the next answer); sent from its own memory, it is freed.
  EXPECT_LT(after.second, before.second + big / 2) << "the rank holds a buffer the size of the result";
#endif
}

} // namespace
