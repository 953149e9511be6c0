// add_reader / add_writer / remove_* and wait_readable / wait_writable.

#include <simul/loop.hpp>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using simul::task;

namespace {

/// A connected pair of Unix stream sockets, closed at the end of the test.
struct socket_pair {
  int fds[2] = {-1, -1};
  socket_pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0); }
  ~socket_pair() {
    for (int fd : fds) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
  }
  [[nodiscard]] int a() const { return fds[0]; }
  [[nodiscard]] int b() const { return fds[1]; }
};

/// Runs `loop` until `done()` or two seconds passed.
template <class Pred>
void run_until(simul::event_loop& loop, Pred done) {
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  auto guard = loop.call_later(2s, [] {});
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    loop.run_once();
  }
  guard.cancel();
}

} // namespace

TEST(FdWatch, ReaderRunsWhileReadableAndRemoveSaysWhetherOneWasThere) {
  socket_pair sp;
  simul::event_loop loop;
  std::string got;
  loop.add_reader(sp.a(), [&] {
    char buf[16];
    const auto n = ::read(sp.a(), buf, sizeof buf);
    if (n > 0) {
      got.append(buf, static_cast<std::size_t>(n));
    }
  });
  ASSERT_EQ(::write(sp.b(), "hello", 5), 5);
  run_until(loop, [&] { return got.size() == 5; });
  EXPECT_EQ(got, "hello");
  EXPECT_TRUE(loop.remove_reader(sp.a()));
  EXPECT_FALSE(loop.remove_reader(sp.a()));
  EXPECT_FALSE(loop.remove_writer(sp.a()));
  // Nothing watches now: data arriving runs no callback.
  ASSERT_EQ(::write(sp.b(), "x", 1), 1);
  loop.run_nowait();
  EXPECT_EQ(got, "hello");
  loop.close();
}

TEST(FdWatch, SecondAddReplacesAndReaderAndWriterShareADescriptor) {
  socket_pair sp;
  simul::event_loop loop;
  int first = 0;
  int second = 0;
  int writable = 0;
  loop.add_reader(sp.a(), [&] { ++first; });
  loop.add_reader(sp.a(), [&] {
    ++second;
    char c;
    (void)::read(sp.a(), &c, 1);
  });
  loop.add_writer(sp.a(), [&] {
    if (++writable == 3) {
      loop.remove_writer(sp.a()); // a callback may remove itself
    }
  });
  ASSERT_EQ(::write(sp.b(), "x", 1), 1);
  run_until(loop, [&] { return second == 1 && writable == 3; });
  EXPECT_EQ(first, 0);
  EXPECT_EQ(second, 1);
  EXPECT_EQ(writable, 3); // level-triggered: once per iteration until removed
  for (int i = 0; i < 3; ++i) {
    loop.run_nowait();
  }
  EXPECT_EQ(writable, 3);
  EXPECT_FALSE(loop.remove_writer(sp.a()));
  EXPECT_TRUE(loop.remove_reader(sp.a()));
  loop.close();
}

TEST(FdWatch, ExceptionFromCallbackGoesToTheHandler) {
  socket_pair sp;
  simul::event_loop loop;
  std::string reported;
  loop.set_exception_handler([&](simul::event_loop&, const simul::exception_context& c) {
    reported = c.message;
    try {
      std::rethrow_exception(c.exception);
    } catch (const std::runtime_error& e) {
      reported += std::string(" / ") + e.what();
    }
  });
  loop.add_writer(sp.a(), [&] {
    loop.remove_writer(sp.a());
    throw std::runtime_error("boom");
  });
  run_until(loop, [&] { return !reported.empty(); });
  EXPECT_NE(reported.find("writer callback for file descriptor " + std::to_string(sp.a())), std::string::npos)
      << reported;
  EXPECT_NE(reported.find("boom"), std::string::npos) << reported;
  loop.close();
}

TEST(FdWatch, BadCallsAreRefusedWithClearErrors) {
  simul::event_loop loop;
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const int closed_fd = pipe_fds[0];
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  try {
    loop.add_reader(closed_fd, [] {});
    ADD_FAILURE() << "a closed descriptor was accepted";
  } catch (const simul::io_error& e) {
    EXPECT_EQ(e.code(), EBADF) << e.what();
    EXPECT_NE(std::string(e.what()).find("add_reader"), std::string::npos) << e.what();
  }
  // A regular file cannot be polled (epoll refuses it).
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  EXPECT_THROW(loop.add_writer(::fileno(file), [] {}), simul::io_error);
  std::fclose(file);
  EXPECT_THROW(loop.add_reader(-1, [] {}), simul::error);
  socket_pair sp;
  EXPECT_THROW(loop.add_reader(sp.a(), std::function<void()>{}), simul::error);
  // Nothing half-registered after the failures.
  EXPECT_FALSE(loop.remove_reader(closed_fd));
  EXPECT_FALSE(loop.remove_writer(sp.a()));
  loop.close();
  EXPECT_THROW(loop.add_reader(sp.a(), [] {}), simul::error);
}

TEST(FdWatch, CallsFromAnotherThreadWhileRunningAreRefused) {
  socket_pair sp;
  simul::event_loop loop;
  std::atomic<int> refused{0};
  loop.call_soon([&] {
    std::thread other([&] {
      try {
        loop.add_reader(sp.a(), [] {});
      } catch (const simul::error& e) {
        if (std::string(e.what()).find("other than the loop's") != std::string::npos) {
          ++refused;
        }
      }
      try {
        (void)loop.remove_writer(sp.a());
      } catch (const simul::error&) {
        ++refused;
      }
    });
    other.join();
    loop.stop();
  });
  loop.run();
  EXPECT_EQ(refused.load(), 2);
  EXPECT_FALSE(loop.remove_reader(sp.a()));
  loop.close();
}

TEST(FdWatch, CloseEndsWatchesLeftOpen) {
  socket_pair sp;
  simul::event_loop loop;
  loop.add_reader(sp.a(), [] {});
  loop.add_writer(sp.b(), [] {});
  loop.close(); // frees them (ASan would see a leak otherwise)
  // A new loop, perhaps at the same address, starts with no watches.
  simul::event_loop again;
  EXPECT_FALSE(again.remove_reader(sp.a()));
  again.close();
}

TEST(FdWatch, WaitReadableAndWritableInACoroutine) {
  socket_pair sp;
  simul::run([&]() -> task<void> {
    co_await simul::wait_writable(sp.b());
    // (A coroutine lambda's captures die with the lambda: pass the descriptor.)
    auto writer = simul::create_task([](int fd) -> task<void> {
      co_await simul::sleep(10ms);
      EXPECT_EQ(::write(fd, "ping", 4), 4);
    }(sp.b()));
    co_await simul::wait_readable(sp.a());
    char buf[8];
    EXPECT_EQ(::read(sp.a(), buf, sizeof buf), 4);
    co_await writer;
    // The wait left no watch behind.
    EXPECT_FALSE(simul::get_running_loop().remove_reader(sp.a()));
    EXPECT_FALSE(simul::get_running_loop().remove_writer(sp.b()));
  }());
}

TEST(FdWatch, CancelledWaitRemovesItsWatchAndABusyDescriptorIsRefused) {
  socket_pair sp;
  simul::run([&]() -> task<void> {
    auto& loop = simul::get_running_loop();
    auto waiting = simul::create_task([](int fd) -> task<void> { co_await simul::wait_readable(fd); }(sp.a()));
    co_await simul::sleep(5ms);
    waiting.cancel();
    EXPECT_THROW(co_await waiting, simul::cancelled_error);
    EXPECT_FALSE(loop.remove_reader(sp.a()));

    loop.add_reader(sp.a(), [] {});
    EXPECT_THROW(co_await simul::wait_readable(sp.a()), simul::error);
    EXPECT_TRUE(loop.remove_reader(sp.a()));

    // Timing out a wait is a cancellation too.
    EXPECT_THROW(co_await simul::wait_for([](int fd) -> task<void> { co_await simul::wait_readable(fd); }(sp.a()), 5ms),
                 simul::timeout_error);
    EXPECT_FALSE(loop.remove_reader(sp.a()));
  }());
}
