// The codec on its own (no pool): values that went through cereal's format
// decode from a bounded archive, so a length forged inside an archive is a
// serialization_error before anything is allocated.

#include <simul/procpool/detail/codec/codec.hpp>
#include <simul/procpool/detail/task.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using simul::detail::decode;
using simul::detail::encode;
using simul::detail::encode_result;
using simul::detail::in_message;
using simul::detail::out_message;
using simul::detail::unique_fd;

/// The message (a blob) holding `archive_bytes`, as a worker would send it.
std::string as_message(const std::string& archive_bytes) {
  out_message out;
  out.put_blob(archive_bytes.data(), archive_bytes.size());
  return out.bytes;
}

/// A cereal archive whose first thing is a size tag claiming `length`,
/// followed by `tail`.
std::string forged_length(std::uint64_t length, const std::string& tail) {
  std::ostringstream stream(std::ios::binary);
  {
    cereal::BinaryOutputArchive archive(stream);
    archive(cereal::make_size_tag(length));
  }
  return stream.str() + tail;
}

template <class T>
T decode_message(const std::string& message) {
  std::vector<unique_fd> fds;
  in_message in{message.data(), message.size(), 0, &fds, 0};
  return decode<T>(in);
}

template <class T>
void expect_refused(const std::string& message) {
  try {
    (void)decode_message<T>(message);
    ADD_FAILURE() << "a forged length was decoded";
  } catch (const simul::serialization_error& e) {
    EXPECT_NE(std::string(e.what()).find("claims"), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception (the decoder trusted the length?): " << e.what();
  }
}

struct holder {
  std::string s;
  template <class A>
  void serialize(A& a) {
    a(s);
  }
};

} // namespace

TEST(Codec, HonestValuesRoundTrip) {
  const std::vector<std::string> strings{"a", "", std::string(1000, 'x')};
  const std::map<std::string, int> map{{"one", 1}, {"two", 2}};
  out_message out;
  encode(out, strings);
  encode(out, map);
  std::vector<unique_fd> fds;
  in_message in{out.bytes.data(), out.bytes.size(), 0, &fds, 0};
  EXPECT_EQ(decode<std::vector<std::string>>(in), strings);
  EXPECT_EQ((decode<std::map<std::string, int>>(in)), map);
}

// fuzz/findings/procpool_cereal_string_length without its first byte (the
// harness's type selector): a std::vector<std::string> result whose first
// string claims 0xfffc000001 bytes (about 1 TiB). cereal's own archive calls
// std::string::resize with it before reading a byte.
TEST(Codec, FuzzFindingForgedStringLengthIsRefusedBeforeAllocating) {
  const unsigned char finding[] = {0x00, 0x1b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,
                                   0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0xfc, 0xff, 0x00, 0x00,
                                   0x00, 0x61, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x62, 0x63};
  const std::string message(reinterpret_cast<const char*>(finding), sizeof(finding));
  expect_refused<std::vector<std::string>>(message);
}

TEST(Codec, ForgedContainerLengthsAreRefused) {
  const auto huge = std::uint64_t{1} << 40;
  expect_refused<std::vector<std::vector<std::string>>>(as_message(forged_length(huge, "abc")));
  expect_refused<std::unordered_map<int, int>>(as_message(forged_length(huge, "abcdefgh")));
  expect_refused<std::map<std::string, int>>(as_message(forged_length(huge, "")));
  // A length just past the bytes left is refused too; one that fits is read.
  expect_refused<holder>(as_message(forged_length(4, "abc")));
  EXPECT_EQ(decode_message<holder>(as_message(forged_length(3, "abc"))).s, "abc");
}

TEST(Codec, TruncatedArchiveIsASerializationError) {
  const std::vector<std::string> strings{"hello", "world"};
  std::ostringstream stream(std::ios::binary);
  {
    cereal::BinaryOutputArchive archive(stream);
    archive(strings);
  }
  auto bytes = stream.str();
  bytes.resize(bytes.size() - 3);
  EXPECT_THROW((void)decode_message<std::vector<std::string>>(as_message(bytes)), simul::serialization_error);
}

// mpi_pool's worker ranks send a big contiguous result straight from the
// value's memory: encode_result moves it into the message, uncopied.
TEST(Codec, ABigResultMovesApartFromTheMessageWithoutACopy) {
  std::vector<std::uint32_t> result(1024);
  for (std::size_t i = 0; i < result.size(); ++i) {
    result[i] = static_cast<std::uint32_t>(i * 7);
  }
  const auto expected = result;
  const void* const storage = result.data();
  out_message out;
  out.apart_threshold = 4096;
  encode_result(out, std::move(result));
  EXPECT_EQ(out.apart.data, storage) << "the result was copied";
  EXPECT_EQ(out.apart.size, 4096U);
  EXPECT_LT(out.bytes.size(), 16U) << "only the tag and the size go inline";
  // The bytes arrive apart (here, a copy standing for the second message).
  const std::string arrived(static_cast<const char*>(out.apart.data), out.apart.size);
  in_message in{out.bytes.data(), out.bytes.size(), 0, nullptr, 0};
  in.apart_data = arrived.data();
  in.apart_size = arrived.size();
  EXPECT_EQ(decode<std::vector<std::uint32_t>>(in), expected);
}

TEST(Codec, OnlyAResultAtTheThresholdAndTakenByValueGoesApart) {
  const std::string small(4095, 's');
  out_message below;
  below.apart_threshold = 4096;
  encode_result(below, std::string(small));
  EXPECT_EQ(below.apart.data, nullptr);
  EXPECT_EQ(decode_message<std::string>(below.bytes), small);
  // A result the trampoline still needs (an lvalue) is copied.
  const std::string kept(8192, 'k');
  out_message lvalue;
  lvalue.apart_threshold = 4096;
  encode_result(lvalue, kept);
  EXPECT_EQ(lvalue.apart.data, nullptr);
  EXPECT_EQ(decode_message<std::string>(lvalue.bytes), kept);
  // And without a threshold (the process pool's messages) nothing goes apart.
  out_message pool;
  encode_result(pool, std::string(kept));
  EXPECT_EQ(pool.apart.data, nullptr);
  EXPECT_EQ(decode_message<std::string>(pool.bytes), kept);
}

TEST(Codec, ABlobSentApartMustArriveWholeAndOnce) {
  out_message out;
  out.apart_threshold = 1;
  encode_result(out, std::string(100, 'x'));
  ASSERT_NE(out.apart.data, nullptr);
  const std::string tag = out.bytes;
  // Its bytes never came: a clear error, not a read past the message.
  EXPECT_THROW((void)decode_message<std::string>(tag), simul::serialization_error);
  // Fewer (or more) bytes than announced.
  const std::string short_bytes(99, 'x');
  {
    in_message in{tag.data(), tag.size(), 0, nullptr, 0};
    in.apart_data = short_bytes.data();
    in.apart_size = short_bytes.size();
    EXPECT_THROW((void)decode<std::string>(in), simul::serialization_error);
  }
  // A forged second tag in the same message finds the bytes already taken.
  const std::string bytes(100, 'x');
  const std::string twice = tag + tag;
  in_message in{twice.data(), twice.size(), 0, nullptr, 0};
  in.apart_data = bytes.data();
  in.apart_size = bytes.size();
  EXPECT_EQ(decode<std::string>(in), bytes);
  EXPECT_THROW((void)decode<std::string>(in), simul::serialization_error);
  // One blob apart per message.
  EXPECT_THROW(out.put_apart(nullptr, bytes.data(), bytes.size()), simul::serialization_error);
}
