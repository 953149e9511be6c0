// Fuzzes a TLS stream fed arbitrary records: a client connection over a
// socketpair whose "server" side sends the input, cut into segments, then
// hangs up. Whatever comes, the handshake must end in one of the errors the
// stream documents (ssl_error, ssl_certificate_error, connection_error,
// timeout_error), with nothing leaked and nothing read out of bounds.
//
// Input: segments, each prefixed by its length byte.

#include <simul/loop.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

const simul::ssl_context& client_context() {
  static const simul::ssl_context ctx = simul::ssl_context::client();
  return ctx;
}

simul::task<void> feed(int fd, std::vector<std::string> segments) {
  for (const auto& s : segments) {
    std::size_t done = 0;
    while (done < s.size()) {
      const auto n = ::write(fd, s.data() + done, s.size() - done);
      if (n <= 0) {
        break; // the client gave up and closed: the rest has nowhere to go
      }
      done += static_cast<std::size_t>(n);
    }
    co_await simul::yield_now();
    co_await simul::yield_now();
  }
  ::close(fd);
}

simul::task<void> check(std::vector<std::string> segments) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    std::abort();
  }
  auto feeder = simul::create_task(feed(fds[1], std::move(segments)));
  const simul::connection_options options{
      .ssl = &client_context(), .server_hostname = "localhost", .ssl_handshake_timeout = std::chrono::seconds(5)};
  try {
    auto [reader, writer] = co_await simul::open_connection(simul::socket_fd{fds[0]}, options);
    // A handshake cannot succeed without the server's key; if it ever did,
    // reading must still end cleanly.
    (void)co_await reader.read();
    writer.close();
  } catch (const simul::ssl_error&) {
  } catch (const simul::connection_error&) {
  } catch (const simul::timeout_error&) {
  }
  co_await feeder;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> segments;
  std::size_t pos = 0;
  while (pos < size) {
    const std::size_t len = std::min<std::size_t>(data[pos], size - pos - 1);
    ++pos;
    segments.emplace_back(reinterpret_cast<const char*>(data + pos), len);
    pos += len;
  }
  simul::run(check(std::move(segments)));
  return 0;
}
