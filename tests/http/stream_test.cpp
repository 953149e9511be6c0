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
