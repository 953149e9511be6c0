// Values of every kind cross the boundary and come back equal: plain bytes,
// cereal types, user types with serialize(), big buffers through memfd. And
// the runtime failures of serialization are errors, never hangs.

#include <simul/procpool.hpp>

#include <gtest/gtest.h>

#include <malloc.h>

#include <cstdint>
#include <list>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::string shout(std::string s) {
  for (auto& c : s) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return s + "!";
}

std::map<std::string, std::vector<int>> group(std::vector<std::string> words) {
  std::map<std::string, std::vector<int>> out;
  for (const auto& w : words) {
    out[w.substr(0, 1)].push_back(static_cast<int>(w.size()));
  }
  return out;
}

std::optional<int> maybe_half(int x) { return x % 2 == 0 ? std::optional<int>(x / 2) : std::nullopt; }

std::variant<int, std::string> classify(std::variant<int, std::string> v) {
  if (std::holds_alternative<int>(v)) {
    return std::to_string(std::get<int>(v));
  }
  return static_cast<int>(std::get<std::string>(v).size());
}

std::tuple<int, std::string, double> tuple_back(std::pair<int, std::string> p) { return {p.first, p.second, 0.5}; }

struct employee {
  std::string name;
  std::vector<std::string> skills;
  int age = 0;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(name, skills, age);
  }
};

employee promote(employee e) {
  e.skills.push_back("management");
  e.age += 1;
  return e;
}

std::vector<std::uint8_t> invert(std::vector<std::uint8_t> data) {
  for (auto& b : data) {
    b = static_cast<std::uint8_t>(~b);
  }
  return data;
}

std::uint64_t checksum(std::vector<std::uint8_t> data) {
  return std::accumulate(data.begin(), data.end(), std::uint64_t{0});
}

struct refuses_to_save {
  int value = 0;
  template <class Archive>
  void save(Archive& archive) const {
    if (value < 0) {
      throw std::runtime_error("negative values cannot be saved");
    }
    archive(value);
  }
  template <class Archive>
  void load(Archive& archive) {
    archive(value);
  }
};

refuses_to_save make_refusing(int v) { return refuses_to_save{v}; }

int square(int x) { return x * x; }
int fail_on_13(int x) {
  if (x == 13) {
    throw std::domain_error("unlucky");
  }
  return x;
}

} // namespace

TEST(ProcessPoolSerialization, StringsContainersOptionalVariantTuplePair) {
  simul::process_pool procs({.workers = 2});
  EXPECT_EQ(procs.submit(shout, std::string("hello")).get(), "HELLO!");
  auto grouped = procs.submit(group, std::vector<std::string>{"apple", "avocado", "banana"}).get();
  EXPECT_EQ(grouped["a"], (std::vector<int>{5, 7}));
  EXPECT_EQ(grouped["b"], (std::vector<int>{6}));
  EXPECT_EQ(procs.submit(maybe_half, 8).get(), std::optional<int>(4));
  EXPECT_EQ(procs.submit(maybe_half, 7).get(), std::nullopt);
  EXPECT_EQ(std::get<std::string>(procs.submit(classify, std::variant<int, std::string>(42)).get()), "42");
  EXPECT_EQ(std::get<int>(procs.submit(classify, std::variant<int, std::string>(std::string("abc"))).get()), 3);
  auto t = procs.submit(tuple_back, std::pair<int, std::string>(7, "seven")).get();
  EXPECT_EQ(t, std::make_tuple(7, std::string("seven"), 0.5));
  EXPECT_EQ(
      procs.submit([](std::list<int> l) { return std::set<int>(l.begin(), l.end()); }, std::list<int>{3, 1, 3}).get(),
      (std::set<int>{1, 3}));
}

TEST(ProcessPoolSerialization, UserTypesWithSerialize) {
  simul::process_pool procs({.workers = 1});
  auto e = procs.submit(promote, employee{"ada", {"math"}, 36}).get();
  EXPECT_EQ(e.name, "ada");
  EXPECT_EQ(e.skills, (std::vector<std::string>{"math", "management"}));
  EXPECT_EQ(e.age, 37);
}

TEST(ProcessPoolSerialization, BigBuffersTravelThroughMemfdBothWays) {
  simul::process_pool procs({.workers = 1, .shm_threshold = 4096});
  std::vector<std::uint8_t> data(3 * 1024 * 1024 + 7);
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<std::uint8_t>(i * 31);
  }
  auto back = procs.submit(invert, data).get();
  ASSERT_EQ(back.size(), data.size());
  for (std::size_t i = 0; i < data.size(); i += 997) {
    ASSERT_EQ(back[i], static_cast<std::uint8_t>(~data[i])) << i;
  }
  EXPECT_EQ(procs.submit(checksum, data).get(), std::accumulate(data.begin(), data.end(), std::uint64_t{0}));
  // Just under and just over the threshold, and an empty one.
  for (std::size_t n : {std::size_t{4095}, std::size_t{4096}, std::size_t{0}}) {
    std::vector<std::uint8_t> small(n, 1);
    EXPECT_EQ(procs.submit(invert, small).get(), std::vector<std::uint8_t>(n, 0xfe)) << n;
  }
  // A big string inside a cereal type goes through a memfd too.
  employee big{std::string(100000, 'x'), {}, 1};
  EXPECT_EQ(procs.submit(promote, big).get().name.size(), 100000U);
}

TEST(ProcessPoolSerialization, RecycledMemfdsNeverMixPayloads) {
  // Memfds circulate between the parent and the workers (a result comes back
  // in the memfd its argument went in, the next argument goes in that one):
  // many in flight at once, of changing sizes and contents, each must come
  // back exactly as its own.
  simul::process_pool procs({.workers = 2, .shm_threshold = 4096});
  for (int round = 0; round < 6; ++round) {
    std::vector<std::vector<std::uint8_t>> inputs;
    std::vector<simul::future<std::vector<std::uint8_t>>> futures;
    for (int i = 0; i < 8; ++i) {
      const int k = round * 8 + i;
      std::vector<std::uint8_t> data(5000 + 40000 * static_cast<std::size_t>((k * 7) % 5));
      for (std::size_t j = 0; j < data.size(); ++j) {
        data[j] = static_cast<std::uint8_t>(j * 13 + static_cast<std::size_t>(k) * 101);
      }
      futures.push_back(procs.submit(invert, data));
      inputs.push_back(std::move(data));
    }
    for (int i = 0; i < 8; ++i) {
      const auto back = futures[i].get();
      ASSERT_EQ(back.size(), inputs[i].size()) << "round " << round << " task " << i;
      for (std::size_t j = 0; j < back.size(); ++j) {
        ASSERT_EQ(back[j], static_cast<std::uint8_t>(~inputs[i][j]))
            << "round " << round << " task " << i << " byte " << j;
      }
    }
    // Big strings and a cereal type in the same circulation.
    EXPECT_EQ(procs.submit(promote, employee{std::string(50000 + round, 'q'), {}, round}).get().name.size(),
              50000U + static_cast<std::size_t>(round));
  }
}

TEST(ProcessPoolSerialization, KeepWorkerHeapTakesBigBlocksFromTheHeap) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizers' allocators ignore mallopt and do not report mallinfo2";
#else
  // In the worker: how many more bytes are in fresh mappings while a 40 MiB
  // block is alive (glibc maps blocks that big unless told not to).
  auto mapped_for_block = [](std::size_t bytes) {
    const auto before = ::mallinfo2().hblkhd;
    std::vector<char> block(bytes, 1);
    const auto after = ::mallinfo2().hblkhd;
    return static_cast<std::uint64_t>(after - before) + (block.back() == 1 ? 0 : 1);
  };
  simul::process_pool plain({.workers = 1});
  EXPECT_GE(plain.submit(mapped_for_block, std::size_t{40} << 20).get(), std::uint64_t{40} << 20);
  simul::process_pool keeping({.workers = 1, .keep_worker_heap = true});
  EXPECT_EQ(keeping.submit(mapped_for_block, std::size_t{40} << 20).get(), 0U);
  // Big payloads still round-trip.
  std::vector<std::uint8_t> data(3 << 20, 9);
  EXPECT_EQ(keeping.submit(invert, data).get(), std::vector<std::uint8_t>(3 << 20, static_cast<std::uint8_t>(~9)));
#endif
}

TEST(ProcessPoolSerialization, ADefaultPoolSendsMegabytesThroughMemfd) {
  simul::process_pool procs({.workers = 1});
  std::vector<std::uint8_t> data(8 * 1024 * 1024, 3);
  EXPECT_EQ(procs.submit(checksum, data).get(), 3ULL * data.size());
}

TEST(ProcessPoolSerialization, AResultThatCannotBeSerializedIsAnErrorNotAHang) {
  simul::process_pool procs({.workers = 1});
  auto f = procs.submit(make_refusing, -1);
  ASSERT_TRUE(f.wait_for(20s));
  try {
    (void)f.get();
    FAIL() << "expected remote_error";
  } catch (const simul::remote_error& e) {
    EXPECT_EQ(e.type_name(), "simul::serialization_error");
    EXPECT_NE(e.message().find("negative values cannot be saved"), std::string::npos) << e.what();
  }
  EXPECT_EQ(procs.submit(make_refusing, 5).get().value, 5);
}

TEST(ProcessPoolSerialization, AnArgumentThatCannotBeSerializedFailsTheSubmit) {
  simul::process_pool procs({.workers = 1});
  EXPECT_THROW((void)procs.submit([](refuses_to_save r) { return r.value; }, refuses_to_save{-5}), std::runtime_error);
  EXPECT_EQ(procs.stats().submitted, 0U);
  EXPECT_EQ(procs.submit([](refuses_to_save r) { return r.value; }, refuses_to_save{5}).get(), 5);
}

TEST(ProcessPoolMap, ResultsInInputOrderWithChunks) {
  simul::process_pool procs({.workers = 2});
  std::vector<int> items(1000);
  std::iota(items.begin(), items.end(), 0);
  for (std::size_t chunk : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000}, std::size_t{5000}}) {
    auto out = procs.map(square, items, {.chunksize = chunk});
    ASSERT_EQ(out.size(), items.size());
    for (int i = 0; i < 1000; ++i) {
      ASSERT_EQ(out[i], i * i) << "chunksize " << chunk;
    }
  }
  EXPECT_TRUE(procs.map(square, std::vector<int>{}).empty());
  // simul::map finds the pool's own map.
  EXPECT_EQ(simul::map(procs, square, std::vector<int>{1, 2, 3}, {.chunksize = 2}), (std::vector<int>{1, 4, 9}));
}

TEST(ProcessPoolMap, FirstExceptionInInputOrderIsRethrown) {
  simul::process_pool procs({.workers = 2});
  std::vector<int> items(100);
  std::iota(items.begin(), items.end(), 0);
  try {
    (void)procs.map(fail_on_13, items, {.chunksize = 5});
    FAIL() << "expected remote_error";
  } catch (const simul::remote_error& e) {
    EXPECT_EQ(e.type_name(), "std::domain_error");
  }
  EXPECT_EQ(procs.submit(square, 2).get(), 4);
}

TEST(ProcessPoolMap, TimeoutForTheWholeCall) {
  simul::process_pool procs({.workers = 1, .shutdown_grace = 100ms});
  std::vector<int> items{2000, 2000, 2000};
  EXPECT_THROW((void)procs.map([](int ms) { return ms + static_cast<int>(::usleep(static_cast<unsigned>(ms) * 1000)); },
                               items, {.chunksize = 1, .timeout = 100ms}),
               simul::timeout_error);
}

TEST(ProcessPoolMap, ImapIsOrderedLazyAndBounded) {
  simul::process_pool procs({.workers = 2});
  std::vector<int> items(500);
  std::iota(items.begin(), items.end(), 0);
  auto results = procs.imap(square, items, {.chunksize = 10, .max_inflight = 3});
  int expected = 0;
  for (int r : results) {
    EXPECT_EQ(r, expected * expected);
    ++expected;
    // Never more than max_inflight chunks ahead of the consumer.
    const auto s = procs.stats();
    EXPECT_LE(s.submitted - s.completed, 3U);
  }
  EXPECT_EQ(expected, 500);
}

TEST(ProcessPoolMap, ImapOverAnEndlessRangeStopsWhenTheConsumerDoes) {
  simul::process_pool procs({.workers = 2});
  int seen = 0;
  for (int r : procs.imap(square, std::views::iota(0), {.chunksize = 4, .max_inflight = 2})) {
    EXPECT_EQ(r, seen * seen);
    if (++seen == 100) {
      break;
    }
  }
  EXPECT_EQ(seen, 100);
  EXPECT_LE(procs.stats().submitted, 100U / 4 + 2);
}

TEST(ProcessPoolMap, ImapUnorderedYieldsEveryResultOnce) {
  simul::process_pool procs({.workers = 2});
  std::vector<int> items(300);
  std::iota(items.begin(), items.end(), 0);
  std::multiset<int> got;
  for (int r : procs.imap_unordered(square, std::move(items), {.chunksize = 7})) {
    got.insert(r);
  }
  ASSERT_EQ(got.size(), 300U);
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ(got.count(i * i), 1U) << i;
  }
}

TEST(ProcessPoolMap, ImapRethrowsATasksException) {
  simul::process_pool procs({.workers = 2});
  std::vector<int> items(40);
  std::iota(items.begin(), items.end(), 0);
  int seen = 0;
  EXPECT_THROW(
      {
        for (int r : procs.imap(fail_on_13, items, {.chunksize = 1})) {
          EXPECT_EQ(r, seen++);
        }
      },
      simul::remote_error);
  EXPECT_EQ(seen, 13);
}
