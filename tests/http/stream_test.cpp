// client::stream: the head first, then the body as chunks, with backpressure.

#include "http_test_env.hpp"

#include <simul/http.hpp>
#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <string>

using namespace std::chrono_literals;
using simul::task;
using simul::test::server;
namespace http = simul::http;

TEST(HttpStream, HeadThenChunksMakeTheBody) {
  simul::run([]() -> task<void> {
    http::client c;
    auto s = co_await c.stream({.url = server().url("/chunked")});
    EXPECT_EQ(s.head.status, 200);
    EXPECT_EQ(s.head.header("Content-Type").value_or(""), "text/plain");
    EXPECT_TRUE(s.head.body.empty());
    std::string body;
    while (auto chunk = co_await s.body.next()) {
      body += *chunk;
    }
    EXPECT_EQ(body, "chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;");
    // A redirected stream gives the last answer's head.
    auto moved = co_await c.stream({.url = server().url("/redirect/1")});
    EXPECT_EQ(moved.head.status, 200);
    std::string json;
    while (auto chunk = co_await moved.body.next()) {
      json += *chunk;
    }
    EXPECT_EQ(json, R"({"hello": "world", "n": 42})");
    auto missing = co_await c.stream({.url = server().url("/status/404")});
    EXPECT_EQ(missing.head.status, 404);
    EXPECT_FALSE((co_await missing.body.next()).has_value());
  }());
}

TEST(HttpStream, ASlowConsumerPausesTheTransfer) {
  simul::run([]() -> task<void> {
    http::client c({.stream_buffer = 256 * 1024});
    const int kib = 64 * 1024; // 64 MiB
    auto s = co_await c.stream({.url = server().url("/large?id=slow&kib=" + std::to_string(kib))});
    EXPECT_EQ(s.head.header("Content-Length").value_or(""), std::to_string(kib * 1024L));
    std::size_t total = 0;
    auto first = co_await s.body.next();
    if (!first) {
      ADD_FAILURE() << "no first chunk";
      co_return;
    }
    total += first->size();
    // Without backpressure the client would take all 64 MiB while it sleeps;
    // paused, the server is blocked once the buffer and the sockets are full.
    co_await simul::sleep(300ms);
    http::client side;
    const auto written = std::stol((co_await side.get(server().url("/progress?id=slow"))).body);
    EXPECT_LT(written, 32L << 20) << "the server wrote " << written << " bytes";
    while (auto chunk = co_await s.body.next()) {
      total += chunk->size();
    }
    EXPECT_EQ(total, static_cast<std::size_t>(kib) * 1024);
  }());
}

TEST(HttpStream, DroppingOrCancellingTheStreamEndsTheTransfer) {
  const int before = simul::test::open_fd_count();
  simul::run([]() -> task<void> {
    http::client c;
    {
      auto s = co_await c.stream({.url = server().url("/large?kib=65536")});
      auto first = co_await s.body.next();
      EXPECT_TRUE(first.has_value());
    } // dropped half-way
    auto reader = [](http::client& cl) -> task<std::size_t> {
      auto s = co_await cl.stream({.url = server().url("/stall?ms=5000")});
      std::size_t n = 0;
      while (auto chunk = co_await s.body.next()) {
        n += chunk->size();
      }
      co_return n;
    };
    auto t = simul::create_task(reader(c));
    co_await simul::sleep(200ms);
    t.cancel();
    EXPECT_THROW((void)co_await t, simul::cancelled_error);
    EXPECT_EQ((co_await c.get(server().url("/json"))).status, 200);
  }());
  EXPECT_EQ(simul::test::open_fd_count(), before);
}

TEST(HttpStream, ErrorsComeFromTheHeadOrTheBody) {
  simul::run([]() -> task<void> {
    http::client c;
    EXPECT_THROW((void)co_await c.stream({.url = "http://no-such-host.invalid/"}), http::resolve_error);
    auto s = co_await c.stream({.url = server().raw_url("/reset")});
    EXPECT_EQ(s.head.status, 200);
    std::size_t n = 0;
    try {
      while (auto chunk = co_await s.body.next()) {
        n += chunk->size();
      }
      ADD_FAILURE() << "a reset body ended cleanly";
    } catch (const http::incomplete_body_error&) {
    }
    EXPECT_EQ(n, 1000u);
  }());
}

namespace {

simul::async_generator<std::string> pieces(int n, bool fail) {
  for (int i = 0; i < n; ++i) {
    co_await simul::sleep(2ms);
    if (i == 1) {
      co_yield std::string(); // an empty chunk is skipped, not the end
    }
    co_yield "piece " + std::to_string(i) + ";" + std::string(static_cast<std::size_t>(i) * 40000, 'p');
  }
  if (fail) {
    throw std::runtime_error("the source broke");
  }
}

std::string pieces_text(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += "piece " + std::to_string(i) + ";" + std::string(static_cast<std::size_t>(i) * 40000, 'p');
  }
  return out;
}

} // namespace

TEST(HttpUpload, BodyFromAnAsyncGenerator) {
  simul::run([]() -> task<void> {
    http::client c;
    auto r = co_await c.upload({.url = server().url("/echo")}, pieces(5, false));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("X-Method").value_or(""), "PUT");
    EXPECT_EQ(r.header("X-Got-Transfer-Encoding").value_or(""), "chunked");
    EXPECT_TRUE(r.body == pieces_text(5)) << r.body.size() << " bytes";
    auto posted =
        co_await c.upload({.method = "POST", .url = server().url("/echo"), .headers = {{"Content-Type", "text/plain"}}},
                          pieces(2, false));
    EXPECT_EQ(posted.header("X-Method").value_or(""), "POST");
    EXPECT_EQ(posted.header("X-Got-Content-Type").value_or(""), "text/plain");
    EXPECT_EQ(posted.body, pieces_text(2));
    auto empty = co_await c.upload({.url = server().url("/echo")}, pieces(0, false));
    EXPECT_EQ(empty.body, "");
  }());
}

TEST(HttpUpload, AFailingSourceFailsTheRequest) {
  simul::run([]() -> task<void> {
    http::client c;
    try {
      (void)co_await c.upload({.url = server().url("/echo")}, pieces(3, true));
      ADD_FAILURE() << "the upload ended";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "the source broke");
    }
    EXPECT_THROW((void)co_await c.upload({.url = server().url("/echo"), .body = "twice"}, pieces(1, false)),
                 http::request_error);
    EXPECT_EQ((co_await c.get(server().url("/json"))).status, 200);
  }());
}
