// The Boost.Asio side of L4: a single-threaded io_context, one awaitable
// coroutine per connection (async_read_some, then async_write); for TLS the
// socket is an asio::ssl::stream that first runs its server handshake.

#include "servers.hpp"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <array>
#include <cstdio>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

template <class Stream>
asio::awaitable<void> echo(Stream stream) {
  std::array<char, 64 * 1024> data;
  try {
    while (true) {
      const std::size_t n = co_await stream.async_read_some(asio::buffer(data), asio::use_awaitable);
      co_await asio::async_write(stream, asio::buffer(data, n), asio::use_awaitable);
    }
  } catch (const std::exception&) {
    // the client went away
  }
}

asio::awaitable<void> echo_tls(asio::ssl::stream<tcp::socket> stream) {
  try {
    co_await stream.async_handshake(asio::ssl::stream_base::server, asio::use_awaitable);
  } catch (const std::exception&) {
    co_return;
  }
  co_await echo(std::move(stream));
}

asio::awaitable<void> listen(tcp::acceptor& acceptor, asio::ssl::context* tls) {
  while (true) {
    tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
    socket.set_option(tcp::no_delay(true));
    if (tls != nullptr) {
      asio::co_spawn(acceptor.get_executor(), echo_tls(asio::ssl::stream<tcp::socket>(std::move(socket), *tls)),
                     asio::detached);
    } else {
      asio::co_spawn(acceptor.get_executor(), echo(std::move(socket)), asio::detached);
    }
  }
}

} // namespace

int serve_asio(bool tls) {
  asio::io_context io(1);
  asio::ssl::context context(asio::ssl::context::tls_server);
  if (tls) {
    context.use_certificate_chain_file(SIMUL_TLS_DATA_DIR "/localhost.pem");
    context.use_private_key_file(SIMUL_TLS_DATA_DIR "/localhost.key", asio::ssl::context::pem);
  }
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::printf("PORT %d\n", acceptor.local_endpoint().port());
  std::fflush(stdout);
  asio::co_spawn(io, listen(acceptor, tls ? &context : nullptr), asio::detached);
  io.run();
  return 0;
}
