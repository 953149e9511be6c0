#pragma once

// simul::async_generator<T>: a coroutine that both awaits and yields values
// (Python's async generator).
//
//   simul::async_generator<int> countdown(int n) {
//     while (n > 0) { co_await simul::sleep(1ms); co_yield n--; }
//   }
//   auto gen = countdown(3);
//   while (auto v = co_await gen.next()) use(*v);              // 3, 2, 1
//   co_await simul::async_for(countdown(3), [](int v) { ... });  // the same
//
// The generator runs only inside `co_await gen.next()`, in the consumer's
// task: its awaits are the consumer's, so cancelling the consumer cancels what
// the generator awaits, and the `cancelled_error` (like any exception the
// generator throws) comes out of `next()`. After the end, an exception or
// `aclose()`, `next()` gives an empty optional.
//
// `co_await gen.aclose()` stops a generator early, as asyncio's does: the
// `co_yield` the generator is suspended at throws `simul::generator_exit`, so
// its `catch` blocks run, and the code after them may `co_await` (in the
// consumer's task; C++ forbids `co_await` inside a handler) before the frame
// ends. A generator should let `generator_exit` out (rethrow it) or
// return; yielding another value instead is an error that aclose reports.
// `generator_exit` does not derive from `std::exception`, so
// `catch (const std::exception&)` in the generator leaves it alone, as
// Python's `except Exception` leaves `GeneratorExit` alone. A generator that
// never started is closed without running. Destroying a generator without
// aclose destroys its frame at once: destructors run, `catch` blocks do not.
//
// Thread-safety: loop thread only. Lifetime: owns its frame; move-only; one
// `next()` at a time.

#include <simul/core/error.hpp>
#include <simul/loop/task.hpp>

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace simul {

/// What a generator's `co_yield` throws when `aclose()` stops it (Python's
/// GeneratorExit). Deliberately not a `std::exception`: see the file comment.
struct generator_exit {};

template <class T>
class [[nodiscard]] async_generator {
 public:
  struct promise_type {
    std::optional<T> m_value;
    std::exception_ptr m_error;
    std::coroutine_handle<> m_consumer;
    bool m_closing = false;

    async_generator get_return_object() noexcept {
      return async_generator(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct to_consumer {
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        return h.promise().m_consumer;
      }
      void await_resume() noexcept {}
    };
    /// A `co_yield`: back to the consumer; throws generator_exit if resumed by aclose.
    struct yielded : to_consumer {
      promise_type* m_promise;
      void await_resume() const {
        if (m_promise->m_closing) {
          throw generator_exit{};
        }
      }
    };
    to_consumer final_suspend() noexcept { return {}; }
    template <class U>
    requires std::is_constructible_v<T, U&&> yielded yield_value(U&& v) {
      m_value.emplace(std::forward<U>(v));
      return {{}, this};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { m_error = std::current_exception(); }
  };

  async_generator() noexcept = default;
  async_generator(async_generator&& o) noexcept
      : m_handle(std::exchange(o.m_handle, nullptr)), m_started(std::exchange(o.m_started, false)) {}
  async_generator& operator=(async_generator&& o) noexcept {
    if (this != &o) {
      reset();
      m_handle = std::exchange(o.m_handle, nullptr);
      m_started = std::exchange(o.m_started, false);
    }
    return *this;
  }
  async_generator(const async_generator&) = delete;
  async_generator& operator=(const async_generator&) = delete;
  ~async_generator() { reset(); }

  struct next_awaiter {
    async_generator* m_gen;
    bool await_ready() const noexcept { return !m_gen->m_handle || m_gen->m_handle.done(); }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> consumer) {
      if (m_gen->m_running) {
        throw error("async_generator: next() while another next() is running");
      }
      m_gen->m_running = true;
      m_gen->m_started = true;
      auto& p = m_gen->m_handle.promise();
      p.m_consumer = consumer;
      p.m_value.reset();
      return m_gen->m_handle;
    }
    std::optional<T> await_resume() {
      m_gen->m_running = false;
      auto h = m_gen->m_handle;
      if (!h) {
        return std::nullopt;
      }
      auto& p = h.promise();
      if (h.done()) {
        if (auto e = std::exchange(p.m_error, nullptr)) {
          m_gen->reset();
          std::rethrow_exception(e);
        }
        return std::nullopt;
      }
      return std::move(p.m_value);
    }
  };

  /// Runs the generator to its next `co_yield`: the value, or an empty
  /// optional at the end. Rethrows what the generator threw.
  [[nodiscard]] next_awaiter next() { return next_awaiter{this}; }

  struct aclose_awaiter {
    async_generator* m_gen;
    bool await_ready() const noexcept { return !m_gen->m_started || m_gen->done(); }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> consumer) {
      if (m_gen->m_running) {
        throw error("async_generator: aclose() while next() is running");
      }
      m_gen->m_running = true;
      auto& p = m_gen->m_handle.promise();
      p.m_consumer = consumer;
      p.m_closing = true;
      p.m_value.reset();
      return m_gen->m_handle;
    }
    void await_resume() {
      m_gen->m_running = false;
      auto h = m_gen->m_handle;
      if (!h) {
        return;
      }
      const bool yielded_again = !h.done();
      auto e = std::exchange(h.promise().m_error, nullptr);
      m_gen->reset();
      if (yielded_again) {
        throw error("async_generator: the generator yielded a value after aclose() (it caught "
                    "simul::generator_exit and went on; rethrow it or return)");
      }
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const generator_exit&) {
          // The normal end of a close.
        }
      }
    }
  };

  /// Stops the generator: its pending `co_yield` throws `generator_exit`, its
  /// cleanup runs (see the file comment), then the frame is destroyed.
  /// Rethrows an exception the cleanup threw (other than generator_exit);
  /// throws `simul::error` if the generator yields again. Closing a
  /// generator that never started, is finished or was closed does nothing
  /// but release it.
  [[nodiscard]] aclose_awaiter aclose() noexcept {
    if (!m_started) {
      reset();
    }
    return aclose_awaiter{this};
  }

  /// True once the generator finished, failed or was closed.
  [[nodiscard]] bool done() const noexcept { return !m_handle || m_handle.done(); }

 private:
  explicit async_generator(std::coroutine_handle<promise_type> h) noexcept : m_handle(h) {}
  void reset() noexcept {
    if (m_handle) {
      std::exchange(m_handle, nullptr).destroy();
    }
  }

  std::coroutine_handle<promise_type> m_handle;
  bool m_running = false;
  bool m_started = false;
};

/// Calls `f(value)` for each value of `gen` (`async for`); `f` may return a
/// `task<void>`, which is awaited before the next value.
template <class T, class F>
task<void> async_for(async_generator<T> gen, F f) {
  while (auto v = co_await gen.next()) {
    if constexpr (std::is_same_v<std::invoke_result_t<F&, T&&>, task<void>>) {
      co_await f(std::move(*v));
    } else {
      f(std::move(*v));
    }
  }
}

} // namespace simul
