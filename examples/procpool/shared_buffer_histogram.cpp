// A big buffer shared with worker processes instead of copied to them.
//
// A 64 MiB "image" of bytes lives in a simul::shared_buffer. Each of four
// tasks takes the whole buffer (only its descriptor travels) and counts the
// byte values in its quarter; a fifth task writes a marker into the buffer,
// which the caller then sees in its own memory. The counts are checked
// against a count made here.

#include <simul/procpool.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using histogram = std::array<std::uint64_t, 256>;

histogram count_quarter(simul::shared_buffer image, int quarter) {
  histogram counts{};
  const std::size_t part = image.size() / 4;
  for (std::size_t i = quarter * part; i < (quarter + 1) * part; ++i) {
    ++counts[static_cast<std::uint8_t>(image[i])];
  }
  return counts;
}

void mark(simul::shared_buffer image) { image[0] = std::byte{0xFF}; }

} // namespace

int main() {
  simul::shared_buffer image(64 << 20);
  std::uint32_t x = 12345;
  for (std::byte& b : image) { // a cheap pseudo-random fill, written in place
    x = x * 1664525 + 1013904223;
    b = static_cast<std::byte>(x >> 24);
  }

  simul::process_pool procs({.workers = 2});
  std::vector<simul::future<histogram>> parts;
  for (int q = 0; q < 4; ++q) {
    parts.push_back(procs.submit(count_quarter, image, q));
  }
  histogram total{};
  for (auto& part : parts) {
    const histogram counts = part.get();
    for (std::size_t v = 0; v < 256; ++v) {
      total[v] += counts[v];
    }
  }

  histogram here{};
  for (const std::byte b : image) {
    ++here[static_cast<std::uint8_t>(b)];
  }
  std::printf("workers counted %s bytes; the same histogram as here: %s\n", std::to_string(image.size()).c_str(),
              total == here ? "yes" : "no");

  procs.submit(mark, image).get();
  std::printf("a worker's write is visible here: %s\n", image[0] == std::byte{0xFF} ? "yes" : "no");
  return total == here && image[0] == std::byte{0xFF} ? 0 : 1;
}
