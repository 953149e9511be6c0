// async_generator, co_await on simul::future, run_coroutine_threadsafe,
// run_in_executor.

#include <simul/loop.hpp>

#include "co_assert.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

simul::async_generator<int> countdown(int n) {
  while (n > 0) {
    co_await simul::sleep(1ms);
    co_yield n--;
  }
}

simul::async_generator<int> failing() {
  co_yield 1;
  throw std::runtime_error("generator failed");
}

} // namespace

TEST(AsyncGenerator, YieldsValuesAcrossAwaitsThenEnds) {
  auto main = []() -> simul::task<std::vector<int>> {
    std::vector<int> got;
    auto gen = countdown(3);
    while (auto v = co_await gen.next()) {
      got.push_back(*v);
    }
    EXPECT_TRUE(gen.done());
    EXPECT_FALSE(co_await gen.next()); // stays at the end
    co_await simul::async_for(countdown(2), [&](int v) { got.push_back(v * 10); });
    co_return got;
  };
  EXPECT_EQ(simul::run(main()), (std::vector<int>{3, 2, 1, 20, 10}));
}

TEST(AsyncGenerator, ExceptionsPropagateToTheConsumer) {
  auto main = []() -> simul::task<void> {
    auto gen = failing();
    EXPECT_EQ(*(co_await gen.next()), 1);
    EXPECT_THROW(co_await gen.next(), std::runtime_error);
    EXPECT_TRUE(gen.done());
  };
  simul::run(main());
}

TEST(AsyncGenerator, AcloseStopsEarlyAndRunsDestructors) {
  auto main = []() -> simul::task<void> {
    bool cleaned = false;
    auto gen = [](bool* flag) -> simul::async_generator<int> {
      struct guard {
        bool* f;
        ~guard() { *f = true; }
      } g{flag};
      for (int i = 0;; ++i) {
        co_yield i;
      }
    }(&cleaned);
    EXPECT_EQ(*(co_await gen.next()), 0);
    co_await gen.aclose();
    EXPECT_TRUE(cleaned);
    EXPECT_FALSE(co_await gen.next());
  };
  simul::run(main());
}

TEST(AsyncGenerator, AcloseThrowsGeneratorExitAtTheYieldSoCatchBlocksRunAndMayAwait) {
  auto main = []() -> simul::task<void> {
    std::vector<std::string> log;
    auto gen = [](std::vector<std::string>* out) -> simul::async_generator<int> {
      try {
        for (int i = 0;; ++i) {
          co_yield i;
        }
      } catch (const std::exception&) {
        out->push_back("caught as std::exception"); // must not happen
        throw;
      } catch (const simul::generator_exit&) {
        out->push_back("generator_exit");
      }
      co_await simul::sleep(1ms); // async cleanup, in the consumer's task
      out->push_back("cleaned up");
    }(&log);
    EXPECT_EQ(*(co_await gen.next()), 0);
    EXPECT_EQ(*(co_await gen.next()), 1);
    co_await gen.aclose();
    EXPECT_EQ(log, (std::vector<std::string>{"generator_exit", "cleaned up"}));
    EXPECT_TRUE(gen.done());
    EXPECT_FALSE(co_await gen.next());
    co_await gen.aclose(); // closing twice does nothing
  };
  simul::run(main());
}

TEST(AsyncGenerator, AcloseIsCleanWhenTheGeneratorRethrowsGeneratorExit) {
  auto main = []() -> simul::task<void> {
    int cleanups = 0;
    auto gen = [](int* n) -> simul::async_generator<int> {
      try {
        co_yield 1;
        co_yield 2;
      } catch (...) {
        ++*n;
        throw;
      }
    }(&cleanups);
    EXPECT_EQ(*(co_await gen.next()), 1);
    co_await gen.aclose();
    EXPECT_EQ(cleanups, 1);
  };
  simul::run(main());
}

TEST(AsyncGenerator, AcloseRethrowsWhatTheCleanupThrows) {
  auto main = []() -> simul::task<void> {
    auto gen = []() -> simul::async_generator<int> {
      try {
        co_yield 1;
      } catch (const simul::generator_exit&) {
        throw std::runtime_error("cleanup failed");
      }
    }();
    EXPECT_EQ(*(co_await gen.next()), 1);
    EXPECT_THROW(co_await gen.aclose(), std::runtime_error);
    EXPECT_TRUE(gen.done());
  };
  simul::run(main());
}

TEST(AsyncGenerator, AGeneratorThatYieldsAfterAcloseIsAClearError) {
  auto main = []() -> simul::task<void> {
    bool destroyed = false;
    auto gen = [](bool* flag) -> simul::async_generator<int> {
      struct guard {
        bool* f;
        ~guard() { *f = true; }
      } g{flag};
      for (int i = 0;; ++i) {
        try {
          co_yield i;
        } catch (...) {
          // swallowed: the generator goes on, which aclose must refuse
        }
      }
    }(&destroyed);
    EXPECT_EQ(*(co_await gen.next()), 0);
    try {
      co_await gen.aclose();
      ADD_FAILURE() << "aclose accepted a generator that yielded again";
    } catch (const simul::error& e) {
      EXPECT_NE(std::string(e.what()).find("yielded a value after aclose"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(destroyed);
    EXPECT_TRUE(gen.done());
  };
  simul::run(main());
}

TEST(AsyncGenerator, AcloseOnAGeneratorThatNeverStartedRunsNothing) {
  auto main = []() -> simul::task<void> {
    bool ran = false;
    auto gen = [](bool* flag) -> simul::async_generator<int> {
      *flag = true;
      co_yield 1;
    }(&ran);
    co_await gen.aclose();
    EXPECT_FALSE(ran);
    EXPECT_TRUE(gen.done());
    EXPECT_FALSE(co_await gen.next());
  };
  simul::run(main());
}

TEST(AsyncGenerator, CancellingTheConsumerDuringAcloseCancelsTheCleanup) {
  auto main = []() -> simul::task<void> {
    bool cleanup_finished = false;
    auto consumer = [](bool* finished) -> simul::task<void> {
      auto gen = [](bool* f) -> simul::async_generator<int> {
        try {
          co_yield 1;
        } catch (const simul::generator_exit&) {
        }
        co_await simul::sleep(1h);
        *f = true;
      }(finished);
      (void)co_await gen.next();
      co_await gen.aclose();
    };
    auto t = simul::create_task(consumer(&cleanup_finished));
    co_await simul::sleep(1ms);
    t.cancel();
    EXPECT_THROW(co_await t, simul::cancelled_error);
    EXPECT_FALSE(cleanup_finished);
  };
  simul::run(main());
}

TEST(AsyncGenerator, CancellingTheConsumerCancelsWhatTheGeneratorAwaits) {
  auto main = []() -> simul::task<void> {
    auto consumer = []() -> simul::task<void> {
      auto gen = []() -> simul::async_generator<int> {
        co_await simul::sleep(1h);
        co_yield 1;
      }();
      (void)co_await gen.next();
    };
    auto t = simul::create_task(consumer());
    co_await simul::yield_now();
    t.cancel();
    EXPECT_THROW(co_await t, simul::cancelled_error);
  };
  simul::run(main());
}

TEST(Bridge, AwaitingAFutureFromAnotherThreadResumesOnTheLoopThread) {
  auto main = []() -> simul::task<void> {
    const auto loop_thread = std::this_thread::get_id();
    simul::promise<int> p;
    auto f = p.get_future();
    std::thread producer([&p] {
      std::this_thread::sleep_for(2ms);
      p.set_value(5);
    });
    const int v = co_await f;
    EXPECT_EQ(v, 5);
    EXPECT_EQ(std::this_thread::get_id(), loop_thread);
    producer.join();
    EXPECT_EQ(co_await simul::make_ready_future(6), 6);
  };
  simul::run(main());
}

TEST(Bridge, CancellingATaskThatAwaitsAFutureCancelsTheFuture) {
  auto main = []() -> simul::task<void> {
    simul::promise<int> p;
    auto f = p.get_future();
    p.set_running_or_notify_cancel();
    std::atomic<bool> hook_called{false};
    p.set_cancel_hook([&] {
      hook_called = true;
      return true;
    });
    auto waiter = [](simul::future<int>* fut) -> simul::task<int> { co_return co_await *fut; };
    auto t = simul::create_task(waiter(&f));
    co_await simul::yield_now();
    t.cancel();
    EXPECT_THROW(co_await t, simul::cancelled_error);
    EXPECT_TRUE(hook_called);
    p.set_value(1); // a late completion finds nobody and is dropped
    co_await simul::yield_now();
  };
  simul::run(main());
}

TEST(Bridge, RunInExecutorAwaitsAnyExecutor) {
  auto main = []() -> simul::task<void> {
    simul::inline_executor ex;
    auto& loop = simul::get_running_loop();
    EXPECT_EQ(co_await loop.run_in_executor(
                  ex, [](int a, int b) { return a * b; }, 6, 7),
              42);
    // The loop is an executor too: submitted work runs on its own thread.
    EXPECT_EQ(co_await loop.submit([] { return 3; }), 3);
  };
  simul::run(main());
}

TEST(Bridge, RunCoroutineThreadsafeFromAnotherThread) {
  simul::event_loop loop;
  std::thread other([&] {
    auto job = []() -> simul::task<int> {
      co_await simul::sleep(1ms);
      co_return 11;
    };
    auto f = simul::run_coroutine_threadsafe(job(), loop);
    EXPECT_EQ(f.get(), 11);
    auto forever = []() -> simul::task<int> {
      co_await simul::sleep(1h);
      co_return 0;
    };
    auto g = simul::run_coroutine_threadsafe(forever(), loop);
    EXPECT_TRUE(g.cancel());
    EXPECT_THROW(g.get(), simul::cancelled_error);
    loop.stop();
  });
  loop.run();
  other.join();
  loop.close();
  auto never = []() -> simul::task<int> { co_return 1; };
  EXPECT_THROW((void)simul::run_coroutine_threadsafe(never(), loop), simul::error);
}
