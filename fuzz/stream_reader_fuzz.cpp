// Fuzzes the stream reader: an arbitrary byte stream, cut into arbitrary
// segments, read with an arbitrary sequence of readline / readuntil /
// readexactly / read(n) under a small limit. Whatever the reads return, plus
// what is left at the end, must be exactly the bytes sent, in order; every
// error must be one the reader documents.
//
// Input: byte 0 picks the limit (1..64); byte 1 the number of read
// operations' bytes that follow; those bytes are the operations; the rest is
// the stream, each segment prefixed by its length byte (0..31).

#include <simul/loop.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

struct input {
  std::size_t limit = 1;
  std::vector<std::uint8_t> ops;
  std::vector<std::string> segments;
};

input parse(const std::uint8_t* data, std::size_t size) {
  input in;
  if (size < 2) {
    return in;
  }
  in.limit = 1 + data[0] % 64;
  std::size_t pos = 2;
  const std::size_t nops = std::min<std::size_t>(data[1], size - pos);
  in.ops.assign(data + pos, data + pos + nops);
  pos += nops;
  while (pos < size) {
    const std::size_t len = std::min<std::size_t>(data[pos] % 32, size - pos - 1);
    ++pos;
    in.segments.emplace_back(reinterpret_cast<const char*>(data + pos), len);
    pos += len;
  }
  return in;
}

[[noreturn]] void fail(const char* why) {
  std::fprintf(stderr, "stream_reader_fuzz: %s\n", why);
  std::abort();
}

const char* const k_separators[] = {"\n", "\r\n", "ab", "xyz"};

/// One read as the op byte says; appends what it returned to `got`.
simul::task<void> one_read(simul::stream_reader& reader, std::uint8_t op, std::string& got) {
  const std::size_t n = op >> 2;
  bool overrun = false;
  try {
    switch (op & 3) {
    case 0:
      got += co_await reader.readline();
      break;
    case 1:
      got += co_await reader.readuntil(k_separators[n % 4]);
      break;
    case 2:
      got += co_await reader.readexactly(n);
      break;
    default:
      got += co_await reader.read(n == 0 ? 1 : n);
      break;
    }
  } catch (const simul::incomplete_read_error& e) {
    got += e.partial(); // at EOF: what was left is handed over
  } catch (const simul::limit_overrun_error&) {
    overrun = true;
  }
  if (overrun) {
    // Nothing consumed: take some bytes so the next operation can progress.
    if (reader.buffered() == 0) {
      fail("limit_overrun_error with nothing buffered");
    }
    got += co_await reader.read(reader.limit());
  }
}

simul::task<void> feed(int fd, const std::vector<std::string>& segments) {
  for (const auto& s : segments) {
    std::size_t done = 0;
    while (done < s.size()) {
      const auto n = ::write(fd, s.data() + done, s.size() - done);
      if (n < 0) {
        co_await simul::yield_now(); // the socket is full until the reader reads
        continue;
      }
      done += static_cast<std::size_t>(n);
    }
    // Let the reader see this segment on its own before the next one.
    co_await simul::yield_now();
    co_await simul::yield_now();
  }
  ::shutdown(fd, SHUT_WR);
  ::close(fd);
}

simul::task<void> check(input in) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    fail("socketpair");
  }
  std::string sent;
  for (const auto& s : in.segments) {
    sent += s;
  }
  const simul::connection_options options{.limit = in.limit};
  auto [reader, writer] = co_await simul::open_connection(simul::socket_fd{fds[0]}, options);
  auto feeder = simul::create_task(feed(fds[1], in.segments));
  std::string got;
  for (const auto op : in.ops) {
    co_await one_read(reader, op, got);
    if (reader.at_eof()) {
      break;
    }
  }
  got += co_await reader.read(); // the rest, to EOF
  co_await feeder;
  if (got != sent) {
    fail("the bytes read differ from the bytes sent");
  }
  writer.close();
  co_await writer.wait_closed();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  simul::run(check(parse(data, size)));
  return 0;
}
