// Several loops in several threads, each with its own client.

#include "http_test_env.hpp"

#include <simul/http.hpp>
#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

using simul::task;
using simul::test::server;
namespace http = simul::http;

TEST(HttpThreads, EachLoopInItsThreadWithItsOwnClient) {
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&ok, t] {
      simul::run([](std::atomic<int>& count, int id) -> task<void> {
        http::client c({.max_connections = 4});
        std::vector<simul::task<int>> all;
        auto one = [](http::client& cl, std::string u) -> task<int> { co_return (co_await cl.get(u)).status; };
        for (int i = 0; i < 20; ++i) {
          all.push_back(one(c, server().url("/echo?thread=" + std::to_string(id) + "&i=" + std::to_string(i))));
        }
        const auto statuses = co_await simul::gather(std::move(all));
        for (int status : statuses) {
          count += status == 200 ? 1 : 0;
        }
      }(ok, t));
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(ok.load(), 60);
}
