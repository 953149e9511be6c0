// Fuzzes the parent's side of the process pool's answers: the payload of a
// result or error frame, as a worker could forge it, decoded the way the
// parent decodes results of several types (raw blobs, bitwise values,
// structs, and values in cereal's format: strings in a vector, a map) and
// error reports (two blobs). Every malformed payload must end
// in `serialization_error`; nothing may read or allocate out of bounds.
//
// Input: byte 0 picks the decoded type; the rest is the frame's payload.

#include <simul/procpool.hpp>
#include <simul/procpool/detail/codec/codec.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace {

struct point {
  double x = 0;
  std::int32_t id = 0;
};

template <class T>
void decode_as(const char* data, std::size_t size) {
  std::vector<simul::detail::unique_fd> fds; // a forged frame carries no descriptor
  simul::detail::in_message in{data, size, 0, &fds, 0};
  try {
    auto value = simul::detail::decode<T>(in);
    (void)value;
  } catch (const simul::serialization_error&) {
  }
}

void error_report(const char* data, std::size_t size) {
  std::vector<simul::detail::unique_fd> fds;
  simul::detail::in_message in{data, size, 0, &fds, 0};
  try {
    std::string type(in.begin_blob(), '\0');
    in.read_blob_body(type.data(), type.size());
    std::string message(in.begin_blob(), '\0');
    in.read_blob_body(message.data(), message.size());
  } catch (const simul::serialization_error&) {
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const auto* data = reinterpret_cast<const char*>(bytes + 1);
  const auto n = size - 1;
  switch (bytes[0] % 7) {
  case 0:
    decode_as<std::string>(data, n);
    break;
  case 1:
    decode_as<std::vector<std::int32_t>>(data, n);
    break;
  case 2:
    decode_as<std::int64_t>(data, n);
    break;
  case 3:
    decode_as<point>(data, n);
    break;
  case 4:
    decode_as<std::vector<std::string>>(data, n);
    break;
  case 5:
    decode_as<std::map<std::string, std::int32_t>>(data, n);
    break;
  default:
    error_report(data, n);
    break;
  }
  return 0;
}
