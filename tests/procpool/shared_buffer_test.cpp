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
