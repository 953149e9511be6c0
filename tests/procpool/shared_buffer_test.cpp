// shared_buffer: bytes in shared memory that a worker maps instead of
// receiving a copy. Copies share the bytes, a worker's writes reach the
// caller, a buffer sent and returned is the caller's own memory, and nothing
// leaks: descriptors and mappings go away with the last handle. Bad input —
// an impossible size, a size that does not match the memory, a missing
// descriptor — is a clear error.

#include <simul/procpool.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace {

std::uint64_t sum_and_mark(simul::shared_buffer buffer) {
  std::uint64_t sum = 0;
  for (const std::byte b : buffer) {
    sum += static_cast<std::uint8_t>(b);
  }
  buffer[0] = std::byte{0xEE}; // the caller sees this
  return sum;
}

simul::shared_buffer echo(simul::shared_buffer buffer) { return buffer; }

simul::shared_buffer make_in_worker(std::size_t size) {
  simul::shared_buffer made(size);
  auto words = made.as<std::uint32_t>();
  std::iota(words.begin(), words.end(), std::uint32_t{1});
  return made;
}

std::size_t sizes(simul::shared_buffer a, std::vector<int> v, std::string s, simul::shared_buffer b) {
  return a.size() + v.size() + s.size() + b.size();
}

int crash_while_holding(simul::shared_buffer buffer) {
  buffer[1] = std::byte{0x42}; // written before the crash: stays written
  ::signal(SIGSEGV, SIG_DFL);
  ::raise(SIGSEGV);
  return 0;
}

std::vector<std::string> open_fds() {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ignored;
    out.push_back(entry.path().filename().string() + " -> " +
                  std::filesystem::read_symlink(entry.path(), ignored).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

int shared_mappings() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) {
    n += line.find("simul-shared-buffer") != std::string::npos ? 1 : 0;
  }
  return n;
}

} // namespace

TEST(SharedBuffer, ANewBufferIsZeroedWritableAndPageAligned) {
  simul::shared_buffer buffer(10000);
  ASSERT_EQ(buffer.size(), 10000U);
  EXPECT_FALSE(buffer.empty());
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.data()) % 4096, 0U);
  for (const std::byte b : buffer) {
    ASSERT_EQ(b, std::byte{0});
  }
  buffer.as<std::uint16_t>()[4999] = 0xBEEF;
  EXPECT_EQ(buffer.as<std::uint16_t>().size(), 5000U);
  EXPECT_EQ(std::as_const(buffer).as<std::uint16_t>()[4999], 0xBEEF);

  const std::vector<std::byte> bytes{std::byte{1}, std::byte{2}, std::byte{3}};
  const simul::shared_buffer copied{std::span<const std::byte>(bytes)};
  ASSERT_EQ(copied.size(), 3U);
  EXPECT_EQ(copied[2], std::byte{3});

  const simul::shared_buffer none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.data(), nullptr);
}

TEST(SharedBuffer, CopiesShareTheBytes) {
  simul::shared_buffer a(64);
  simul::shared_buffer b = a; // NOLINT: the copy is the point
  b[7] = std::byte{9};
  EXPECT_EQ(a[7], std::byte{9});
  EXPECT_TRUE(a.shares_with(b));
  EXPECT_FALSE(a.shares_with(simul::shared_buffer(64)));
  EXPECT_FALSE(simul::shared_buffer().shares_with(simul::shared_buffer()));
}

TEST(SharedBuffer, AnImpossibleSizeIsASystemError) {
  EXPECT_THROW(simul::shared_buffer(std::size_t{1} << 60), std::system_error);
}

TEST(SharedBuffer, AWorkerReadsTheCallersBytesAndItsWritesReachTheCaller) {
  simul::process_pool procs({.workers = 1});
  simul::shared_buffer buffer(3 << 20);
  for (std::size_t i = 0; i < buffer.size(); ++i) {
    buffer[i] = static_cast<std::byte>(i % 7);
  }
  std::uint64_t expected = 0;
  for (const std::byte b : buffer) {
    expected += static_cast<std::uint8_t>(b);
  }
  EXPECT_EQ(procs.submit(sum_and_mark, buffer).get(), expected);
  EXPECT_EQ(buffer[0], std::byte{0xEE});
}

TEST(SharedBuffer, ABufferSentAndReturnedIsTheCallersOwnMemory) {
  simul::process_pool procs({.workers = 2});
  simul::shared_buffer buffer(1 << 20);
  buffer[123] = std::byte{5};
  for (int i = 0; i < 20; ++i) {
    auto back = procs.submit(echo, buffer).get();
    ASSERT_TRUE(back.shares_with(buffer));
    ASSERT_EQ(back.data(), buffer.data());
    ASSERT_EQ(back[123], std::byte{5});
  }
}

TEST(SharedBuffer, ABufferMadeInAWorkerArrivesWithItsBytes) {
  simul::process_pool procs({.workers = 1});
  auto made = procs.submit(make_in_worker, std::size_t{1} << 20).get();
  ASSERT_EQ(made.size(), std::size_t{1} << 20);
  const auto words = made.as<std::uint32_t>();
  for (std::size_t i = 0; i < words.size(); ++i) {
    ASSERT_EQ(words[i], i + 1) << i;
  }
  // It stays valid after the worker that made it is gone.
  procs.shutdown({.wait = true});
  EXPECT_EQ(made.as<std::uint32_t>()[1000], 1001U);
}

TEST(SharedBuffer, EmptyBuffersAndOtherArgumentsTravelTogether) {
  simul::process_pool procs({.workers = 1});
  EXPECT_EQ(
      procs.submit(sizes, simul::shared_buffer(100), std::vector<int>(3), std::string(5, 'x'), simul::shared_buffer())
          .get(),
      108U);
  EXPECT_TRUE(procs.submit(echo, simul::shared_buffer()).get().empty());
}

TEST(SharedBuffer, AWorkerThatCrashesHoldingABufferFailsAloneAndTheBufferStays) {
  simul::process_pool procs({.workers = 1});
  simul::shared_buffer buffer(4096);
  EXPECT_THROW(procs.submit(crash_while_holding, buffer).get(), simul::worker_crashed);
  EXPECT_EQ(buffer[1], std::byte{0x42}); // shared memory: the write before the crash is there
  EXPECT_EQ(procs.submit(sum_and_mark, buffer).get(), 0x42U);
}

TEST(SharedBuffer, RoundTripsLeaveNoDescriptorOrMappingBehind) {
  simul::process_pool procs({.workers = 2});
  (void)procs.submit(make_in_worker, std::size_t{0}).get(); // both workers are up: their sockets are open
  const auto before = open_fds();
  const int mappings = shared_mappings();
  for (int i = 0; i < 200; ++i) {
    simul::shared_buffer buffer(8192);
    auto back = procs.submit(echo, buffer).get();
    auto made = procs.submit(make_in_worker, std::size_t{4096}).get();
    ASSERT_TRUE(back.shares_with(buffer));
    ASSERT_EQ(made.as<std::uint32_t>()[0], 1U);
  }
  // The I/O thread drops a finished task's record (and the descriptor copy
  // it sent) just after completing its future: give it a moment.
  for (int wait = 0; wait < 200 && open_fds() != before; ++wait) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(open_fds(), before);
  EXPECT_EQ(shared_mappings(), mappings);
}

TEST(SharedBuffer, ASizeThatDoesNotMatchTheMemoryOrAMissingDescriptorIsASerializationError) {
  simul::shared_buffer buffer(4096);
  simul::detail::out_message out;
  simul::detail::encode(out, buffer);
  ASSERT_EQ(out.fds.size(), 1U);

  std::string lying = out.bytes;
  const std::uint64_t bigger = 8192;
  std::memcpy(lying.data(), &bigger, sizeof(bigger));
  simul::detail::in_message wrong_size(lying.data(), lying.size(), 0, &out.fds, 0);
  EXPECT_THROW((void)simul::detail::decode<simul::shared_buffer>(wrong_size), simul::serialization_error);

  simul::detail::in_message no_descriptor(out.bytes.data(), out.bytes.size(), 0, nullptr, 0);
  EXPECT_THROW((void)simul::detail::decode<simul::shared_buffer>(no_descriptor), simul::serialization_error);
}

// ---- shared_buffers inside values that travel through cereal ----

namespace {

struct tile {
  int id = 0;
  simul::shared_buffer pixels;
  std::string label;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(id, pixels, label);
  }
};

tile brighten(tile t) {
  for (std::byte& b : t.pixels) {
    b = static_cast<std::byte>(static_cast<std::uint8_t>(b) + 1);
  }
  t.label += " (brightened)";
  return t;
}

struct batch {
  std::vector<simul::shared_buffer> parts;
  std::string note;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(parts, note);
  }
};

batch reverse_batch(batch b) {
  std::reverse(b.parts.begin(), b.parts.end());
  std::reverse(b.note.begin(), b.note.end());
  return b;
}

std::vector<simul::shared_buffer> make_numbered(int n) {
  std::vector<simul::shared_buffer> out;
  for (int i = 0; i < n; ++i) {
    out.emplace_back(std::size_t{4096});
    out.back().as<std::int32_t>()[0] = i;
  }
  return out;
}

std::size_t count_parts(std::vector<simul::shared_buffer> parts) { return parts.size(); }

} // namespace

TEST(SharedBufferNested, AMemberOfAStructTravelsAsTheSameMemory) {
  simul::process_pool procs({.workers = 1});
  tile t{7, simul::shared_buffer(1 << 16), "sky"};
  std::fill(t.pixels.begin(), t.pixels.end(), std::byte{10});
  const tile back = procs.submit(brighten, t).get();
  EXPECT_EQ(back.id, 7);
  EXPECT_EQ(back.label, "sky (brightened)");
  EXPECT_TRUE(back.pixels.shares_with(t.pixels)); // the caller's own memory came back
  EXPECT_EQ(t.pixels[0], std::byte{11});          // and the worker's writes are in it
  EXPECT_EQ(t.pixels[(1 << 16) - 1], std::byte{11});
}

TEST(SharedBufferNested, AVectorOfBuffersAndABlobInSharedMemoryKeepTheirOrder) {
  // A threshold of 64 bytes sends cereal's own bytes through a memfd too, so
  // the message carries that descriptor and the buffers' descriptors.
  simul::process_pool procs({.workers = 1, .shm_threshold = 64});
  batch b;
  for (int i = 0; i < 5; ++i) {
    b.parts.emplace_back(std::size_t{4096} * static_cast<std::size_t>(i + 1));
    b.parts.back()[0] = static_cast<std::byte>(i);
  }
  b.parts.emplace_back(); // an empty one travels without a descriptor
  b.note = std::string(1000, 'a') + "z";
  const batch back = procs.submit(reverse_batch, b).get();
  ASSERT_EQ(back.parts.size(), 6U);
  EXPECT_TRUE(back.parts[0].empty());
  for (std::size_t i = 1; i < 6; ++i) {
    const auto& sent = b.parts[5 - i];
    EXPECT_TRUE(back.parts[i].shares_with(sent)) << i;
    EXPECT_EQ(back.parts[i].size(), sent.size()) << i;
    EXPECT_EQ(back.parts[i][0], static_cast<std::byte>(5 - i)) << i;
  }
  EXPECT_EQ(back.note.front(), 'z');
  EXPECT_EQ(back.note.size(), 1001U);
}

TEST(SharedBufferNested, BuffersMadeInAWorkerArriveInAVectorAndThroughMap) {
  simul::process_pool procs({.workers = 2});
  const auto made = procs.submit(make_numbered, 10).get();
  ASSERT_EQ(made.size(), 10U);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(made[static_cast<std::size_t>(i)].as<std::int32_t>()[0], i);
  }
  // map sends each chunk's results as one vector: 8 buffers a chunk.
  std::vector<std::size_t> sizes(30, std::size_t{4096});
  const auto mapped = procs.map(make_in_worker, sizes, {.chunksize = 8});
  ASSERT_EQ(mapped.size(), 30U);
  for (const auto& m : mapped) {
    EXPECT_EQ(m.as<std::uint32_t>()[1023], 1024U);
  }
}

TEST(SharedBufferNested, MoreDescriptorsThanAMessageCarriesIsASerializationErrorEitherWay) {
  simul::process_pool procs({.workers = 1});
  std::vector<simul::shared_buffer> many;
  for (int i = 0; i < 65; ++i) {
    many.emplace_back(std::size_t{64});
  }
  EXPECT_THROW((void)procs.submit(count_parts, many), simul::serialization_error);
  many.pop_back();
  EXPECT_EQ(procs.submit(count_parts, many).get(), 64U); // 64 is the limit, and allowed
  try {
    (void)procs.submit(make_numbered, 65).get();
    ADD_FAILURE() << "a result with 65 buffers arrived";
  } catch (const simul::remote_error& e) {
    EXPECT_EQ(e.type_name(), "simul::serialization_error");
    EXPECT_NE(e.message().find("at most 64"), std::string::npos) << e.message();
  }
  EXPECT_EQ(procs.submit(make_numbered, 3).get().size(), 3U); // the worker is still there
  EXPECT_EQ(procs.stats().crashed, 0U);
}

TEST(SharedBufferNested, AnotherCerealArchiveRefusesABufferWithAClearError) {
  std::ostringstream stream(std::ios::binary);
  cereal::BinaryOutputArchive out(stream);
  tile t{1, simul::shared_buffer(16), "x"};
  try {
    out(t);
    ADD_FAILURE() << "a shared_buffer was saved to a plain archive";
  } catch (const simul::serialization_error& e) {
    EXPECT_NE(std::string(e.what()).find("only a process_pool"), std::string::npos) << e.what();
  }
  std::istringstream bytes(std::string("\x01\0\0\0\0\0\0\0", 8), std::ios::binary);
  cereal::BinaryInputArchive in(bytes);
  simul::shared_buffer loaded;
  EXPECT_THROW(in(loaded), simul::serialization_error);
}

TEST(SharedBufferNested, RoundTripsLeaveNoDescriptorOrMappingBehind) {
  simul::process_pool procs({.workers = 1});
  (void)procs.submit(make_numbered, 0).get(); // the worker is up: its socket is open
  const auto before = open_fds();
  const int mappings = shared_mappings();
  for (int i = 0; i < 100; ++i) {
    tile t{i, simul::shared_buffer(4096), "t"};
    auto back = procs.submit(brighten, t).get();
    ASSERT_TRUE(back.pixels.shares_with(t.pixels));
    ASSERT_EQ(procs.submit(make_numbered, 3).get()[2].as<std::int32_t>()[0], 2);
  }
  for (int wait = 0; wait < 200 && open_fds() != before; ++wait) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(open_fds(), before);
  EXPECT_EQ(shared_mappings(), mappings);
}
