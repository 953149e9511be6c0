#pragma once

// simul::http::client: an HTTP client on the simul loop, built on libcurl's
// multi-socket interface (HTTP/1.1, HTTP/2 over TLS, redirects, compression,
// connection reuse).
//
//   simul::http::client c({.max_connections = 50, .timeout = 10s});
//   auto r = co_await c.get("http://127.0.0.1:8080/json");
//   r.raise_for_status();
//   use(r.status, r.header("Content-Type"), r.body);
//   auto posted = co_await c.post(url, R"({"a": 1})", "application/json");
//   auto any = co_await c.request({.method = "PUT", .url = u, .headers = {{"X-A", "1"}}, .body = "..."});
//   auto s = co_await c.stream({.url = big});            // status and headers now,
//   while (auto chunk = co_await s.body.next()) ...      // the body as it arrives
//   auto up = co_await c.upload({.url = u}, chunks());   // a body from an async generator
//
// The client drives libcurl through the loop's public extension points only:
// `add_reader` / `add_writer` for libcurl's sockets and `call_later` for its
// timer. One client keeps one connection pool: requests made through it reuse
// kept-alive connections and multiplex HTTP/2 streams.
//
// Contract:
// - Thread-safety: a client belongs to the loop that was running on the
//   thread that made it (or to the loop given); every call is made on that
//   loop's thread, inside a task. Several loops in several threads each need
//   their own client. Responses are plain values.
// - Lifetime: the loop outlives the client; a `stream_response` (and its
//   body generator) may outlive the client object, which then lives on until
//   the last transfer is gone. The `request` passed to `request()` or
//   `stream()` is copied when the call is made: a braced temporary,
//   `co_await c.request({.url = u, .headers = {{"X-A", "1"}}})`, is safe.
// - Cancellation: cancelling the awaiting task (or a `wait_for` / `timeout`
//   around it) removes the transfer from libcurl at once and frees its
//   connection; the `co_await` throws `cancelled_error`.
// - Errors: see <simul/http/errors.hpp>; a 4xx or 5xx answer is a response,
//   not an error, until `raise_for_status()`.

#include <simul/http/errors.hpp>
#include <simul/loop/async_generator.hpp>
#include <simul/loop/event_loop.hpp>
#include <simul/loop/task.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace simul::http {

using namespace std::chrono_literals;

/// Header fields in the order they came or go; repeated names are kept.
using header_list = std::vector<std::pair<std::string, std::string>>;

/// How a client connects and how long it waits.
struct client_options {
  std::size_t max_connections = 100;               ///< open connections at most (all hosts); 0: no limit
  std::size_t max_connections_per_host = 0;        ///< per host; 0: no limit
  std::chrono::milliseconds timeout = 30s;         ///< a whole request, connect to last byte; 0: none
  std::chrono::milliseconds connect_timeout = 10s; ///< the connection (and TLS handshake)
  bool follow_redirects = true;                    ///< follow 3xx with a Location
  int max_redirects = 10;                          ///< more is a redirect_error
  bool verify_tls = true;                          ///< check the server's certificate and name
  std::string ca_file{};                           ///< trust this PEM file; empty: the system's authorities
  std::string user_agent = "simul/0.1.0";          ///< the User-Agent header
  /// Streaming: a body buffer this full pauses the transfer until the
  /// consumer takes chunks (backpressure).
  std::size_t stream_buffer = 1 << 20;
};

/// One request header, as views: `{"X-A", "1"}`.
struct header_field {
  std::string_view name{};
  std::string_view value{};
};

/// The headers of a request: up to eight written in place,
/// `{{"X-A", "1"}, {"X-B", "2"}}`, or a whole `header_list` (viewed, not
/// copied: it must live until the call has returned). Trivially destructible,
/// so a braced `request` inside a `co_await` is safe with g++ 12.
class request_headers {
 public:
  static constexpr std::size_t max_inline = 8;
  request_headers() = default;
  request_headers(header_field a) noexcept : m_count(1) { m_inline[0] = a; }
  request_headers(header_field a, header_field b) noexcept : m_inline{a, b}, m_count(2) {}
  request_headers(header_field a, header_field b, header_field c) noexcept : m_inline{a, b, c}, m_count(3) {}
  request_headers(header_field a, header_field b, header_field c, header_field d) noexcept
      : m_inline{a, b, c, d}, m_count(4) {}
  request_headers(header_field a, header_field b, header_field c, header_field d, header_field e) noexcept
      : m_inline{a, b, c, d, e}, m_count(5) {}
  request_headers(header_field a, header_field b, header_field c, header_field d, header_field e,
                  header_field f) noexcept
      : m_inline{a, b, c, d, e, f}, m_count(6) {}
  request_headers(header_field a, header_field b, header_field c, header_field d, header_field e, header_field f,
                  header_field g) noexcept
      : m_inline{a, b, c, d, e, f, g}, m_count(7) {}
  request_headers(header_field a, header_field b, header_field c, header_field d, header_field e, header_field f,
                  header_field g, header_field h) noexcept
      : m_inline{a, b, c, d, e, f, g, h}, m_count(8) {}
  /// Any number of headers, from a list the caller keeps until the call returns.
  template <class L>
  requires std::same_as<L, header_list> request_headers(const L& all)
  noexcept : m_list(&all) {}

  /// Calls `f(name, value)` for each header, in order.
  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < m_count; ++i) {
      f(m_inline[i].name, m_inline[i].value);
    }
    if (m_list != nullptr) {
      for (const auto& [name, value] : *m_list) {
        f(std::string_view(name), std::string_view(value));
      }
    }
  }

 private:
  header_field m_inline[max_inline]{};
  std::size_t m_count = 0;
  const header_list* m_list = nullptr;
};

/// One request: views of what to send, copied when `request()` or `stream()`
/// is called, so what they view need only live until the call returns. With
/// nothing to destroy it is safe as a braced temporary inside `co_await`
/// (g++ 12 destroys such temporaries with string members twice).
struct request {
  std::string_view method = "GET"; ///< any token: GET, POST, PUT, DELETE, HEAD, PATCH...
  std::string_view url{};          ///< http:// or https://
  request_headers headers{};       ///< sent as given
  std::string_view body{};         ///< sent when not empty (or when the method is POST/PUT/PATCH)
  /// The whole request; zero: the client's `timeout`.
  std::chrono::milliseconds timeout{0};
};

/// An answer, body and all.
struct response {
  int status = 0;                       ///< 200, 404...
  std::string reason;                   ///< "OK", "Not Found"; empty for HTTP/2 (no reason phrase there)
  header_list headers;                  ///< of the last answer (after redirects)
  std::string body;                     ///< decompressed (gzip, deflate, br, zstd)
  std::string url;                      ///< after redirects
  std::string http_version;             ///< "1.0", "1.1", "2"
  std::chrono::microseconds elapsed{0}; ///< from start to the last byte
  std::string method;                   ///< as asked

  /// The first header of that name (case-insensitive), or nothing.
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const;
  /// Every header of that name (case-insensitive), in order.
  [[nodiscard]] std::vector<std::string> header_values(std::string_view name) const;
  /// Throws `status_error` (status and URL) for 4xx and 5xx.
  void raise_for_status() const;
};

/// A streamed answer: status and headers (`body` is empty in `head`), then
/// `body` yields the chunks as they arrive. The transfer pauses while
/// `client_options::stream_buffer` bytes wait for the consumer. Dropping the
/// generator ends the transfer.
struct stream_response {
  response head;
  async_generator<std::string> body;
};

namespace detail {
struct client_state;
} // namespace detail

/// The client. See the file comment.
class client {
 public:
  /// A client of the loop running on this thread. Throws `simul::error`
  /// outside a running loop, for bad options, or if libcurl cannot start.
  explicit client(client_options options = {});
  /// A client of `loop` (which need not be running yet).
  client(event_loop& loop, client_options options);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;
  client(client&&) noexcept;
  client& operator=(client&&) noexcept;

  /// GET `url`.
  task<response> get(std::string_view url);
  /// POST `body` to `url` with this Content-Type.
  task<response> post(std::string_view url, std::string_view body,
                      std::string_view content_type = "application/octet-stream");
  /// Any request. `r` is copied before this returns.
  task<response> request(const http::request& r);
  /// Any request, streamed: gives the head once the headers are in.
  task<stream_response> stream(const http::request& r);
  /// Any request (PUT unless `r.method` says otherwise) whose body comes
  /// from `body`, chunk by chunk as the connection takes it (HTTP/1.1:
  /// chunked transfer encoding). `r.body` must be empty. The generator runs
  /// in the awaiting task; an exception from it fails the request.
  task<response> upload(const http::request& r, async_generator<std::string> body);

  /// The options in force.
  [[nodiscard]] const client_options& options() const noexcept;

 private:
  std::shared_ptr<detail::client_state> m_state;
};

/// The running loop's default client: made with the default options on
/// first use, shared by every `http::get` / `post` / `request` on that loop
/// (so they reuse connections), closed by the loop's `close()`. For any
/// other request: `co_await http::default_client().request({...})`. Throws
/// `simul::error` outside a running loop or while it closes.
/// Thread-safety: the loop's thread. Lifetime: until the loop closes.
client& default_client();

/// GET `url` with the running loop's default client (`default_client()`).
task<response> get(std::string_view url);
/// POST `body` to `url` with the running loop's default client.
task<response> post(std::string_view url, std::string_view body,
                    std::string_view content_type = "application/octet-stream");

} // namespace simul::http
