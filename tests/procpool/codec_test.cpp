// The codec on its own (no pool): values that went through cereal's format
// decode from a bounded archive, so a length forged inside an archive is a
// serialization_error before anything is allocated.

#include <simul/procpool/detail/codec/codec.hpp>

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
