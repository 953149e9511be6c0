// simul::http::client against the test server: bodies of every framing,
// redirects, headers, errors, timeouts, cancellation, reuse, many at once, TLS.

#include "http_test_env.hpp"
#include "local_servers.hpp"

#include <simul/http.hpp>
#include <simul/loop.hpp>

#include <curl/curl.h> // the test asks libcurl whether it has HTTP/2
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using simul::task;
using simul::test::server;
namespace http = simul::http;

namespace {

/// A loopback port nobody listens on: bound, then closed.
int closed_port() { return simul::test::free_port(); }

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += s;
  }
  return out;
}

} // namespace

TEST(HttpClient, GetGivesStatusHeadersBodyAndDetails) {
  simul::run([]() -> task<void> {
    http::client c;
    auto r = co_await c.get(server().url("/json"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.reason, "OK");
    EXPECT_EQ(r.body, R"({"hello": "world", "n": 42})");
    EXPECT_EQ(r.header("content-type").value_or(""), "application/json");
    EXPECT_EQ(r.header("CONTENT-LENGTH").value_or(""), "27");
    EXPECT_FALSE(r.header("X-Nothing").has_value());
    EXPECT_EQ(r.url, server().url("/json"));
    EXPECT_EQ(r.http_version, "1.1");
    EXPECT_EQ(r.method, "GET");
    EXPECT_GT(r.elapsed.count(), 0);
    EXPECT_NO_THROW(r.raise_for_status());
  }());
}

TEST(HttpClient, BracedTemporaryRequestSendsMethodHeadersAndBody) {
  simul::run([]() -> task<void> {
    http::client c;
    const std::string u = server().url("/echo");
    // The natural spelling: an aggregate temporary inside the co_await.
    auto r = co_await c.request({.method = "PUT", .url = u, .headers = {{"X-A", "1"}, {"X-B", "two"}}, .body = "abc"});
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("X-Method").value_or(""), "PUT");
    EXPECT_EQ(r.header("X-Got-X-A").value_or(""), "1");
    EXPECT_EQ(r.header("X-Got-X-B").value_or(""), "two");
    EXPECT_EQ(r.body, "abc");
    auto plain = co_await c.request({.url = u, .headers = {{"X-A", "1"}}});
    EXPECT_EQ(plain.header("X-Method").value_or(""), "GET");
    EXPECT_EQ(plain.header("X-Got-X-A").value_or(""), "1");
    auto posted = co_await c.post(u, R"({"a": 1})", "application/json");
    EXPECT_EQ(posted.header("X-Method").value_or(""), "POST");
    EXPECT_EQ(posted.header("X-Got-Content-Type").value_or(""), "application/json");
    EXPECT_EQ(posted.body, R"({"a": 1})");
    auto deleted = co_await c.request({.method = "DELETE", .url = u});
    EXPECT_EQ(deleted.header("X-Method").value_or(""), "DELETE");
    auto head = co_await c.request({.method = "HEAD", .url = server().url("/json")});
    // More headers than fit in place: a header_list, viewed.
    http::header_list many;
    for (int i = 0; i < 20; ++i) {
      many.emplace_back("X-N" + std::to_string(i), std::to_string(i));
    }
    auto lots = co_await c.request({.url = u, .headers = many});
    EXPECT_EQ(lots.header("X-Got-X-N19").value_or(""), "19");
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.body, "");
    // A large body goes whole, with no 100-continue round trip.
    const std::string big(3 << 20, 'b');
    auto echoed = co_await c.post(u, big, "text/plain");
    EXPECT_EQ(echoed.body.size(), big.size());
    EXPECT_TRUE(echoed.body == big);
  }());
}

TEST(HttpClient, ChunkedCloseDelimitedAndGzipBodiesArriveWhole) {
  simul::run([]() -> task<void> {
    http::client c;
    auto chunked = co_await c.get(server().url("/chunked"));
    EXPECT_EQ(chunked.body, "chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;");
    EXPECT_EQ(chunked.header("Transfer-Encoding").value_or(""), "chunked");
    auto old = co_await c.get(server().raw_url("/http10"));
    EXPECT_EQ(old.status, 200);
    EXPECT_EQ(old.http_version, "1.0");
    EXPECT_EQ(old.body, repeat("until close ", 100));
    auto zipped = co_await c.get(server().url("/gzip"));
    EXPECT_EQ(zipped.header("Content-Encoding").value_or(""), "gzip");
    EXPECT_EQ(zipped.body, repeat("compressed ", 1000));
  }());
}

TEST(HttpClient, RedirectsAreFollowedBoundedOrLeftAlone) {
  simul::run([]() -> task<void> {
    http::client c;
    auto r = co_await c.get(server().url("/redirect/3"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.url, server().url("/json"));
    EXPECT_EQ(r.body, R"({"hello": "world", "n": 42})");
    try {
      (void)co_await c.get(server().url("/loop"));
      ADD_FAILURE() << "a redirect loop ended";
    } catch (const http::redirect_error& e) {
      EXPECT_NE(std::string(e.what()).find(server().url("/loop")), std::string::npos) << e.what();
      EXPECT_EQ(e.url(), server().url("/loop"));
    }
    http::client few({.max_redirects = 2});
    EXPECT_THROW((void)co_await few.get(server().url("/redirect/3")), http::redirect_error);
    http::client stay({.follow_redirects = false});
    auto first = co_await stay.get(server().url("/redirect/3"));
    EXPECT_EQ(first.status, 302);
    EXPECT_EQ(first.header("location").value_or(""), "/redirect/2");
  }());
}

TEST(HttpClient, RepeatedHeadersAreKept) {
  simul::run([]() -> task<void> {
    http::client c;
    auto r = co_await c.get(server().url("/cookies"));
    EXPECT_EQ(r.header_values("set-cookie"), (std::vector<std::string>{"a=1", "b=2"}));
  }());
}

TEST(HttpClient, RaiseForStatusNamesStatusAndUrl) {
  simul::run([]() -> task<void> {
    http::client c;
    auto missing = co_await c.get(server().url("/status/404"));
    EXPECT_EQ(missing.status, 404); // a response, not an error
    try {
      missing.raise_for_status();
      ADD_FAILURE() << "404 passed";
    } catch (const http::status_error& e) {
      EXPECT_EQ(e.status(), 404);
      EXPECT_EQ(e.url(), server().url("/status/404"));
      EXPECT_NE(std::string(e.what()).find("404 client error"), std::string::npos) << e.what();
    }
    auto broken = co_await c.get(server().url("/status/503"));
    EXPECT_THROW(broken.raise_for_status(), simul::error);
    auto created = co_await c.get(server().url("/status/201"));
    EXPECT_NO_THROW(created.raise_for_status());
  }());
}

TEST(HttpClient, FailuresAreTypedAndNameTheUrl) {
  simul::run([]() -> task<void> {
    http::client c({.connect_timeout = 2s});
    const std::string refused = "http://127.0.0.1:" + std::to_string(closed_port()) + "/x";
    try {
      (void)co_await c.get(refused);
      ADD_FAILURE() << "connected to a closed port";
    } catch (const http::connect_error& e) {
      EXPECT_NE(std::string(e.what()).find(refused), std::string::npos) << e.what();
      EXPECT_EQ(e.url(), refused);
    }
    EXPECT_THROW((void)co_await c.get("http://no-such-host.invalid/"), http::resolve_error);
    EXPECT_THROW((void)co_await c.get("ftp://127.0.0.1/file"), http::url_error);
    EXPECT_THROW((void)co_await c.get("http://[not-an-address/"), http::url_error);
    EXPECT_THROW((void)co_await c.get(""), http::url_error);
    // Bad input is refused before anything is sent.
    EXPECT_THROW((void)co_await c.request({.method = "GE T", .url = server().url("/json")}), http::request_error);
    EXPECT_THROW((void)co_await c.request({.url = server().url("/json"), .headers = {{"Bad:Name", "1"}}}),
                 http::request_error);
    EXPECT_THROW((void)co_await c.request({.url = server().url("/json"), .headers = {{"X-A", "1\r\nX-B: 2"}}}),
                 http::request_error);
    // A body cut short by a reset.
    try {
      (void)co_await c.get(server().raw_url("/reset"));
      ADD_FAILURE() << "a reset body passed";
    } catch (const http::incomplete_body_error& e) {
      EXPECT_NE(std::string(e.what()).find("body cut short"), std::string::npos) << e.what();
    }
    // The client still works after all that.
    EXPECT_EQ((co_await c.get(server().url("/json"))).status, 200);
  }());
}

TEST(HttpClient, TimeoutsRaiseTimeoutError) {
  simul::run([]() -> task<void> {
    http::client c;
    try {
      (void)co_await c.request({.url = server().url("/slow?ms=3000"), .timeout = 100ms});
      ADD_FAILURE() << "no timeout";
    } catch (const http::timeout_error& e) {
      EXPECT_EQ(e.url(), server().url("/slow?ms=3000"));
    }
    http::client quick({.timeout = 100ms});
    EXPECT_THROW((void)co_await quick.get(server().url("/slow?ms=3000")), simul::timeout_error);
    // A body that stalls half-way times out too.
    EXPECT_THROW((void)co_await quick.get(server().url("/stall?ms=3000")), simul::timeout_error);
    EXPECT_EQ((co_await quick.get(server().url("/json"))).status, 200);
  }());
}

TEST(HttpClient, CancellingTheTaskAbortsTheTransferAtOnce) {
  simul::run([]() -> task<void> {
    http::client c;
    const int before = simul::test::open_fd_count();
    auto fetch = [](http::client& cl, std::string u) -> task<http::response> { co_return co_await cl.get(u); };
    auto t = simul::create_task(fetch(c, server().url("/slow?ms=5000")));
    co_await simul::sleep(100ms);
    const auto started = std::chrono::steady_clock::now();
    t.cancel();
    EXPECT_THROW((void)co_await t, simul::cancelled_error);
    EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);
    // Its connection was closed, not kept for reuse mid-answer.
    EXPECT_LE(simul::test::open_fd_count(), before);
    // wait_for around a request is a cancellation with a timeout.
    EXPECT_THROW((void)co_await simul::wait_for(fetch(c, server().url("/slow?ms=5000")), 50ms), simul::timeout_error);
    EXPECT_EQ((co_await c.get(server().url("/json"))).status, 200);
  }());
}

TEST(HttpClient, OneClientReusesItsConnection) {
  simul::run([]() -> task<void> {
    http::client c;
    auto a = co_await c.get(server().url("/echo"));
    auto b = co_await c.get(server().url("/echo"));
    EXPECT_FALSE(a.header("X-Peer-Port").value_or("").empty());
    EXPECT_EQ(a.header("X-Peer-Port"), b.header("X-Peer-Port"));
    http::client other;
    auto d = co_await other.get(server().url("/echo"));
    EXPECT_NE(a.header("X-Peer-Port"), d.header("X-Peer-Port"));
  }());
}

TEST(HttpClient, AThousandConcurrentRequestsLeaveNoDescriptorBehind) {
  const int before = simul::test::open_fd_count();
  simul::run([]() -> task<void> {
    http::client c({.max_connections = 100});
    auto one = [](http::client& cl, int i) -> task<int> {
      auto r = co_await cl.get(server().url("/echo?i=" + std::to_string(i)));
      co_return r.status;
    };
    std::vector<simul::task_handle<int>> tasks;
    for (int i = 0; i < 1000; ++i) {
      tasks.push_back(simul::create_task(one(c, i)));
    }
    int ok = 0;
    for (auto& t : tasks) {
      ok += (co_await t) == 200 ? 1 : 0;
    }
    EXPECT_EQ(ok, 1000);
  }());
  EXPECT_EQ(simul::test::open_fd_count(), before);
}

TEST(HttpClient, HttpsWithTheTestAuthority) {
  simul::run([]() -> task<void> {
    http::client trusting({.ca_file = SIMUL_TLS_DATA_DIR "/localhost.pem"});
    auto r = co_await trusting.get(server().tls_url("/json"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, R"({"hello": "world", "n": 42})");
    http::client system_cas;
    try {
      (void)co_await system_cas.get(server().tls_url("/json"));
      ADD_FAILURE() << "a self-signed certificate was trusted";
    } catch (const http::tls_error& e) {
      EXPECT_NE(std::string(e.what()).find(server().tls_url("/json")), std::string::npos) << e.what();
    }
    http::client careless({.verify_tls = false});
    EXPECT_EQ((co_await careless.get(server().tls_url("/json"))).status, 200);
  }());
}

TEST(HttpClient, Http2OverTlsMultiplexesOneConnection) {
  if ((curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_HTTP2) == 0) {
    GTEST_SKIP() << "this libcurl has no HTTP/2 (built without nghttp2)";
  }
  std::string why_not;
  const auto* h2 = simul::test::nginx(why_not);
  if (h2 == nullptr) {
    GTEST_SKIP() << "no HTTP/2 server: " << why_not;
  }
  const std::string url = "https://localhost:" + std::to_string(h2->tls_port) + "/small.json";
  simul::run([](std::string u) -> task<void> {
    http::client c({.ca_file = SIMUL_TLS_DATA_DIR "/localhost.pem"});
    auto first = co_await c.get(u);
    EXPECT_EQ(first.status, 200);
    EXPECT_EQ(first.http_version, "2");
    EXPECT_EQ(first.reason, "");
    EXPECT_EQ(first.body, R"({"hello": "nginx"})");
    // Twenty at once share the first one's connection (nginx's $connection):
    // HTTP/1.1 would have opened more.
    auto one = [](http::client& cl, std::string v) -> task<std::string> {
      auto r = co_await cl.get(v);
      co_return r.http_version + " " + r.header("X-Connection").value_or("?") + " " + r.body;
    };
    std::vector<simul::task<std::string>> all;
    for (int i = 0; i < 20; ++i) {
      all.push_back(one(c, u));
    }
    const auto bodies = co_await simul::gather(std::move(all));
    const std::string expected = "2 " + first.header("X-Connection").value_or("") + R"( {"hello": "nginx"})";
    for (const auto& b : bodies) {
      EXPECT_EQ(b, expected);
    }
  }(url));
}

TEST(HttpClient, ClientBelongsToOneLoopAndGetMakesItsOwn) {
  EXPECT_THROW(http::client{}, simul::error); // no loop running
  simul::event_loop first;
  http::client c(first, {});
  simul::run([](http::client& cl) -> task<void> {
    EXPECT_THROW((void)co_await cl.get(server().url("/json")), simul::error);
    auto r = co_await http::get(server().url("/json"));
    EXPECT_EQ(r.status, 200);
  }(c));
  first.close();
}

// http::get / http::post share one default client per loop: the second
// call reuses the first one's connection (the server saw one peer port), the
// client and its connection go with loop.close() (descriptors back to where
// they were; ASan sees no leak), and another loop gets a client of its own.
TEST(HttpClient, FreeGetUsesOneDefaultClientPerLoopClosedWithTheLoop) {
  const int before = simul::test::open_fd_count();
  auto peer_ports = [](simul::event_loop& loop) {
    return loop.run_until_complete([]() -> task<std::vector<std::string>> {
      auto a = co_await http::get(server().url("/echo"));
      auto b = co_await http::post(server().url("/echo"), "x", "text/plain");
      EXPECT_EQ(&http::default_client(), &http::default_client());
      co_return std::vector<std::string>{a.header("X-Peer-Port").value_or("a"), b.header("X-Peer-Port").value_or("b")};
    }());
  };
  std::vector<std::string> first;
  {
    simul::event_loop loop;
    first = peer_ports(loop);
    EXPECT_EQ(first[0], first[1]);                   // one connection for both calls
    EXPECT_GT(simul::test::open_fd_count(), before); // kept alive by the loop's client
    loop.close();
  }
  EXPECT_EQ(simul::test::open_fd_count(), before);
  simul::event_loop other;
  const auto second = peer_ports(other);
  EXPECT_EQ(second[0], second[1]);
  EXPECT_NE(second[0], first[0]); // a new client, a new connection
  other.close();
  EXPECT_EQ(simul::test::open_fd_count(), before);
  EXPECT_THROW((void)http::default_client(), simul::error); // no loop running
}

TEST(HttpClient, ClosingTheLoopWithARequestPendingIsClean) {
  simul::event_loop loop;
  auto t = loop.create_task([]() -> task<void> {
    http::client c;
    (void)co_await c.get(server().url("/slow?ms=5000"));
  }());
  loop.call_later(50ms, [&] { loop.stop(); });
  loop.run();
  loop.close(); // cancels the task: its transfer goes, the client with it
  EXPECT_TRUE(t.cancelled());
}
