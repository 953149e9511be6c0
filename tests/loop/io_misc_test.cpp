// DNS, UDP, files and signals on the loop.

#include "io_test_util.hpp"

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>
#include <csignal>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
using simul::task;
using simul::test::open_fd_count;
using simul::test::until;

namespace {
std::string temp_path(const std::string& name) { return "/tmp/simul-test-" + std::to_string(::getpid()) + "-" + name; }
} // namespace

// ---- DNS ----

TEST(LoopDns, ResolvesLocalhostAndNumericAddresses) {
  simul::run([]() -> task<void> {
    auto numeric = co_await simul::getaddrinfo("127.0.0.1", "8080", {.socktype = SOCK_STREAM});
    EXPECT_EQ(numeric.size(), 1u);
    if (numeric.empty()) {
      co_return;
    }
    EXPECT_EQ(numeric[0].host, "127.0.0.1");
    EXPECT_EQ(numeric[0].port, 8080);
    EXPECT_EQ(numeric[0].family, AF_INET);
    auto local = co_await simul::getaddrinfo("localhost", "80", {.family = AF_INET, .socktype = SOCK_STREAM});
    EXPECT_FALSE(local.empty());
    if (local.empty()) {
      co_return;
    }
    EXPECT_EQ(local[0].host, "127.0.0.1");
    EXPECT_EQ(local[0].port, 80);
    auto v6 = co_await simul::getaddrinfo("::1", "443");
    EXPECT_FALSE(v6.empty());
    if (v6.empty()) {
      co_return;
    }
    EXPECT_EQ(v6[0].family, AF_INET6);
    EXPECT_EQ(v6[0].host, "::1");
  }());
}

TEST(LoopDns, FailuresAreDnsErrors) {
  simul::run([]() -> task<void> {
    try {
      (void)co_await simul::getaddrinfo("no-such-host.invalid", "80");
      ADD_FAILURE() << "should not resolve";
    } catch (const simul::dns_error& e) {
      EXPECT_NE(std::string(e.what()).find("no-such-host.invalid"), std::string::npos) << e.what();
    }
    try {
      (void)co_await simul::getaddrinfo("localhost", "no-such-service-name");
      ADD_FAILURE() << "the service should not resolve";
    } catch (const simul::dns_error& e) {
      EXPECT_NE(e.code(), 0);
    }
    EXPECT_THROW((void)co_await simul::getnameinfo("not-an-address", 80), simul::dns_error);
    EXPECT_THROW((void)co_await simul::getnameinfo("127.0.0.1", 99999), simul::error);
  }());
}

TEST(LoopDns, GetnameinfoNumericAndNamed) {
  simul::run([]() -> task<void> {
    auto numeric = co_await simul::getnameinfo("127.0.0.1", 80, NI_NUMERICHOST | NI_NUMERICSERV);
    EXPECT_EQ(numeric.host, "127.0.0.1");
    EXPECT_EQ(numeric.service, "80");
    auto named = co_await simul::getnameinfo("127.0.0.1", 80);
    EXPECT_FALSE(named.host.empty());
    EXPECT_FALSE(named.service.empty());
  }());
}

TEST(LoopDns, CancelledLookupEndsAtOnce) {
  simul::run([]() -> task<void> {
    auto lookup = simul::create_task(simul::getaddrinfo("localhost", "80"));
    lookup.cancel();
    EXPECT_THROW((void)co_await lookup, simul::cancelled_error);
    // Many lookups in flight, then cancelled while the pool may run them.
    std::vector<simul::task_handle<std::vector<simul::address_info>>> many;
    for (int i = 0; i < 20; ++i) {
      many.push_back(simul::create_task(simul::getaddrinfo("localhost", std::to_string(1000 + i))));
    }
    co_await simul::yield_now();
    co_await simul::yield_now();
    for (auto& t : many) {
      t.cancel();
    }
    for (auto& t : many) {
      try {
        (void)co_await t;
      } catch (const simul::cancelled_error&) {
      }
    }
  }());
}

// ---- UDP ----

TEST(LoopUdp, SendsAndReceivesDatagrams) {
  const auto fds_before = open_fd_count();
  simul::run([]() -> task<void> {
    auto a = co_await simul::create_datagram_endpoint("127.0.0.1", 0);
    auto b = co_await simul::create_datagram_endpoint("127.0.0.1", 0);
    EXPECT_GT(a.port(), 0);
    EXPECT_NE(a.port(), b.port());
    co_await a.send_to("ping", "127.0.0.1", b.port());
    auto d = co_await b.receive_from();
    EXPECT_EQ(d.data, "ping");
    EXPECT_EQ(d.host, "127.0.0.1");
    EXPECT_EQ(d.port, a.port());
    co_await b.send_to("pong", d.host, d.port);
    EXPECT_EQ((co_await a.receive_from()).data, "pong");
    co_await a.send_to("", "localhost", b.port()); // empty datagrams exist; names resolve
    EXPECT_EQ((co_await b.receive_from()).data, "");
    a.close();
    b.close();
  }());
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopUdp, QueueIsBoundedAndCountsDrops) {
  simul::run([]() -> task<void> {
    auto rx = co_await simul::create_datagram_endpoint("127.0.0.1", 0, {.max_queued = 4});
    auto tx = co_await simul::create_datagram_endpoint("127.0.0.1", 0);
    for (int i = 0; i < 10; ++i) {
      co_await tx.send_to(std::to_string(i), "127.0.0.1", rx.port());
    }
    co_await until([&] { return rx.queued() + rx.dropped() == 10; });
    EXPECT_EQ(rx.queued(), 4u);
    EXPECT_EQ(rx.dropped(), 6u);
    EXPECT_EQ((co_await rx.receive_from()).data, "0"); // the oldest are kept
  }());
}

TEST(LoopUdp, ErrorsAndClosing) {
  simul::run([]() -> task<void> {
    auto a = co_await simul::create_datagram_endpoint("127.0.0.1", 0);
    try {
      (void)co_await simul::create_datagram_endpoint("127.0.0.1", a.port());
      ADD_FAILURE() << "binding a used port should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EADDRINUSE);
      EXPECT_NE(std::string(e.what()).find(std::to_string(a.port())), std::string::npos);
    }
    EXPECT_THROW((void)co_await a.send_to("x", "no-such-host.invalid", 9), simul::dns_error);
    EXPECT_THROW((void)co_await a.send_to("x", "127.0.0.1", 70000), simul::error);
    auto waiting = simul::create_task(a.receive_from());
    co_await simul::yield_now();
    a.close();
    EXPECT_THROW((void)co_await waiting, simul::error);
    EXPECT_TRUE(a.is_closing());
    EXPECT_THROW((void)co_await a.send_to("x", "127.0.0.1", 9), simul::error);
  }());
}

// ---- files ----

TEST(LoopFiles, WriteReadStatAndRemove) {
  const auto path = temp_path("file.txt");
  const auto fds_before = open_fd_count();
  simul::run([](std::string path) -> task<void> {
    co_await simul::write_file(path, "hello\nworld\n");
    EXPECT_EQ(co_await simul::read_file(path), "hello\nworld\n");
    auto st = co_await simul::stat_file(path);
    EXPECT_EQ(st.size, 12u);
    EXPECT_TRUE(st.is_regular());
    EXPECT_FALSE(st.is_directory());
    EXPECT_GT(st.mtime_ns, 0);

    auto f = co_await simul::open_file(path, "r+");
    EXPECT_EQ(co_await f.read(5), "hello");
    EXPECT_EQ(f.tell(), 5u);
    EXPECT_EQ(co_await f.read_at(6, 5), "world");
    EXPECT_EQ(f.tell(), 5u);
    co_await f.write_at(0, "HELLO");
    f.seek(0);
    EXPECT_EQ(co_await f.read_all(), "HELLO\nworld\n");
    EXPECT_EQ(co_await f.read(10), ""); // at the end
    EXPECT_EQ((co_await f.stat()).size, 12u);
    co_await f.sync();
    co_await f.close();
    co_await f.close(); // idempotent
    EXPECT_FALSE(f.is_open());
    EXPECT_THROW((void)co_await f.read(1), simul::error);

    auto app = co_await simul::open_file(path, "a");
    co_await app.write("more\n");
    co_await app.close();
    EXPECT_EQ(co_await simul::read_file(path), "HELLO\nworld\nmore\n");

    // A big file in several requests.
    std::string big(3 * 1024 * 1024 + 7, 'b');
    co_await simul::write_file(path, big);
    EXPECT_EQ(co_await simul::read_file(path), big);

    co_await simul::remove_file(path);
    EXPECT_THROW((void)co_await simul::stat_file(path), simul::io_error);
  }(path));
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(LoopFiles, ErrorsNameThePath) {
  simul::run([]() -> task<void> {
    const std::string missing = "/tmp/simul-no-such-dir/nothing.txt";
    try {
      (void)co_await simul::open_file(missing, "r");
      ADD_FAILURE() << "open should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), ENOENT);
      EXPECT_EQ(e.address(), missing);
      EXPECT_NE(std::string(e.what()).find(missing), std::string::npos);
      EXPECT_NE(std::string(e.what()).find("no such file"), std::string::npos) << e.what();
    }
    EXPECT_THROW((void)co_await simul::open_file("/tmp/x", "rw"), simul::error);
    const auto path = temp_path("exclusive.txt");
    co_await simul::write_file(path, "x");
    try {
      (void)co_await simul::open_file(path, "x");
      ADD_FAILURE() << "exclusive create of an existing file should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EEXIST);
    }
    co_await simul::remove_file(path);
    EXPECT_THROW(co_await simul::remove_file(path), simul::io_error);
  }());
}

TEST(LoopFiles, ManyFilesConcurrently) {
  simul::run([]() -> task<void> {
    std::vector<simul::task_handle<void>> writers;
    for (int i = 0; i < 16; ++i) {
      writers.push_back(simul::create_task([](int i) -> task<void> {
        const auto p = temp_path("many-" + std::to_string(i));
        co_await simul::write_file(p, std::string(10000 + i, static_cast<char>('a' + i)));
        auto back = co_await simul::read_file(p);
        EXPECT_EQ(back.size(), 10000u + i);
        co_await simul::remove_file(p);
      }(i)));
    }
    for (auto& w : writers) {
      co_await w;
    }
  }());
}

TEST(LoopFiles, ReadsAreExactAcrossTheLoopAndThePool) {
  const auto path = temp_path("sizes.bin");
  simul::run([](std::string path) -> task<void> {
    // 2 MiB + 5 of varied bytes: reads of up to 1 MiB may be served on the
    // loop thread from the page cache, bigger ones by the thread pool.
    std::string data(2 * 1024 * 1024 + 5, '\0');
    for (std::size_t i = 0; i < data.size(); ++i) {
      data[i] = static_cast<char>(i * 131 % 251);
    }
    co_await simul::write_file(path, data);
    auto f = co_await simul::open_file(path, "r");
    EXPECT_EQ(co_await f.read(1024 * 1024), data.substr(0, 1024 * 1024));
    EXPECT_EQ(co_await f.read(2 * 1024 * 1024), data.substr(1024 * 1024)); // short: the end
    EXPECT_EQ(f.tell(), data.size());
    EXPECT_EQ(co_await f.read(1024 * 1024), "");
    EXPECT_EQ(co_await f.read_at(data.size() + 10, 10), ""); // past the end
    EXPECT_EQ(co_await f.read(0), "");
    f.seek(7);
    EXPECT_EQ(co_await f.read_all(), data.substr(7)); // more than 1 MiB in one request
    EXPECT_EQ(f.tell(), data.size());
    EXPECT_EQ(co_await f.read_all(), "");
    co_await f.close();
    EXPECT_EQ(co_await simul::read_file(path), data);
    co_await simul::remove_file(path);
  }(path));
}

TEST(LoopFiles, AReadWhoseEndIsNotCachedIsStillWhole) {
  const auto path = temp_path("half-cached.bin");
  simul::run([](std::string path) -> task<void> {
    constexpr std::size_t half = 2 * 1024 * 1024;
    const std::string data = std::string(half, 'c') + std::string(half, 'u');
    co_await simul::write_file(path, data);
    auto f = co_await simul::open_file(path, "r");
    // Clean pages can be dropped: the second half leaves the page cache, so
    // the loop can read only the start of a read across the middle without
    // waiting for the disk; the thread pool reads the rest.
    EXPECT_EQ(::fdatasync(f.fileno()), 0);
    EXPECT_EQ(::posix_fadvise(f.fileno(), half, half, POSIX_FADV_DONTNEED), 0);
    EXPECT_EQ(co_await f.read_at(half - 512 * 1024, 1024 * 1024), data.substr(half - 512 * 1024, 1024 * 1024));
    EXPECT_EQ(co_await f.read_at(half + 1024 * 1024, 1024 * 1024), std::string(1024 * 1024, 'u'));
    co_await f.close();
    co_await simul::remove_file(path);
  }(path));
}

TEST(LoopFiles, ReadErrorsAndTheOthersRunMeanwhile) {
  const auto path = temp_path("errors.bin");
  const auto fds_before = open_fd_count();
  simul::run([](std::string path) -> task<void> {
    // A file opened for writing only: reading it is a bad descriptor.
    auto w = co_await simul::open_file(path, "w");
    co_await w.write(std::string(4 * 1024 * 1024, 'r'));
    try {
      (void)co_await w.read(10);
      ADD_FAILURE() << "reading a write-only file should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EBADF);
      EXPECT_EQ(e.address(), path);
    }
    EXPECT_EQ(w.tell(), 4u * 1024 * 1024); // the failed read moved nothing
    co_await w.close();
    EXPECT_THROW((void)co_await w.read_all(), simul::error); // closed

    auto dir = co_await simul::open_file("/tmp", "r");
    try {
      (void)co_await dir.read_all();
      ADD_FAILURE() << "reading a directory should fail";
    } catch (const simul::io_error& e) {
      EXPECT_EQ(e.code(), EISDIR);
    }
    co_await dir.close();

    // Reading a cached file chunk by chunk still lets the other tasks run
    // between chunks, and can be cancelled.
    int ticks = 0;
    auto ticker = simul::create_task([](int& ticks) -> task<void> {
      while (true) {
        ++ticks;
        co_await simul::yield_now();
      }
    }(ticks));
    auto r = co_await simul::open_file(path, "r");
    int chunks = 0;
    while (!(co_await r.read(64 * 1024)).empty()) {
      ++chunks;
    }
    EXPECT_EQ(chunks, 64);
    EXPECT_GE(ticks, chunks) << "the reads starved the other tasks";
    r.seek(0);
    auto reader = simul::create_task([](simul::file& r) -> task<void> {
      while (!(co_await r.read(64 * 1024)).empty()) {
      }
    }(r));
    co_await simul::yield_now();
    reader.cancel();
    EXPECT_THROW(co_await reader, simul::cancelled_error);
    EXPECT_LT(r.tell(), 4u * 1024 * 1024);
    ticker.cancel();
    EXPECT_THROW(co_await ticker, simul::cancelled_error);
    co_await r.close();
    co_await simul::remove_file(path);
  }(path));
  EXPECT_EQ(open_fd_count(), fds_before);
}

// ---- signals ----

TEST(LoopSignals, HandlerRunsOnTheLoopAndCanBeRemoved) {
  simul::run([]() -> task<void> {
    int got = 0;
    simul::add_signal_handler(SIGUSR1, [&] { ++got; });
    ::kill(::getpid(), SIGUSR1);
    co_await until([&] { return got == 1; });
    simul::add_signal_handler(SIGUSR1, [&] { got += 10; }); // replaces
    ::kill(::getpid(), SIGUSR1);
    co_await until([&] { return got == 11; });
    EXPECT_TRUE(simul::remove_signal_handler(SIGUSR1));
    EXPECT_FALSE(simul::remove_signal_handler(SIGUSR1));
    EXPECT_THROW(simul::add_signal_handler(SIGKILL, [] {}), simul::error);
    EXPECT_THROW(simul::add_signal_handler(0, [] {}), simul::error);
    EXPECT_THROW(simul::add_signal_handler(SIGUSR2, nullptr), simul::error);
  }());
}

TEST(LoopSignals, HandlerExceptionsAreReported) {
  std::vector<std::string> reports;
  simul::event_loop loop;
  loop.set_exception_handler(
      [&](simul::event_loop&, const simul::exception_context& c) { reports.push_back(c.message); });
  int calls = 0;
  simul::add_signal_handler(loop, SIGUSR2, [&] {
    ++calls;
    throw std::runtime_error("boom");
  });
  loop.run_until_complete([](int& calls) -> task<void> {
    ::kill(::getpid(), SIGUSR2);
    co_await until([&] { return calls == 1; });
  }(calls));
  loop.close(); // handlers left installed are closed with the loop
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("signal"), std::string::npos);
  // A new loop, maybe at the same address, starts with no handler.
  simul::event_loop again;
  EXPECT_FALSE(simul::remove_signal_handler(again, SIGUSR2));
  again.close();
}

TEST(LoopSignals, ClosingTheLoopDestroysTheHandlersLeftInstalled) {
  auto token = std::make_shared<int>(0);
  {
    simul::event_loop loop;
    simul::add_signal_handler(loop, SIGUSR1, [token] { ++*token; });
    simul::add_signal_handler(loop, SIGUSR2, [token] { ++*token; });
    EXPECT_EQ(token.use_count(), 3);
    loop.close();
    EXPECT_EQ(token.use_count(), 1) << "the callbacks outlived their loop";
    EXPECT_FALSE(simul::remove_signal_handler(loop, SIGUSR1)); // gone with the loop
  }
  EXPECT_EQ(token.use_count(), 1);
}

TEST(LoopSignals, SigintCancelsTheMainTaskOfRun) {
  bool unwound = false;
  EXPECT_THROW(simul::run([](bool& unwound) -> task<void> {
                 simul::get_running_loop().call_later(5ms, [] { ::kill(::getpid(), SIGINT); });
                 try {
                   co_await simul::sleep(30s);
                 } catch (const simul::cancelled_error& e) {
                   unwound = true;
                   EXPECT_NE(std::string(e.what()).find("SIGINT"), std::string::npos) << e.what();
                   throw;
                 }
               }(unwound)),
               simul::cancelled_error);
  EXPECT_TRUE(unwound);
  // The default action is back once run() returned.
  struct sigaction current {};
  ASSERT_EQ(sigaction(SIGINT, nullptr, &current), 0);
  EXPECT_EQ(current.sa_handler, SIG_DFL);
}
