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
// `co_await gen.aclose()` stops a generator early. A C++ frame cannot resume
// with an exception thrown into it, so aclose destroys the suspended frame:
// destructors run (RAII cleanup), `catch` blocks and `co_await`s in them do not.
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

template <class T>
class [[nodiscard]] async_generator {
 public:
  struct promise_type {
    std::optional<T> m_value;
    std::exception_ptr m_error;
    std::coroutine_handle<> m_consumer;

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
    to_consumer final_suspend() noexcept { return {}; }
    template <class U>
    requires std::is_constructible_v<T, U&&> to_consumer yield_value(U&& v) {
      m_value.emplace(std::forward<U>(v));
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { m_error = std::current_exception(); }
  };

  async_generator() noexcept = default;
  async_generator(async_generator&& o) noexcept : m_handle(std::exchange(o.m_handle, nullptr)) {}
  async_generator& operator=(async_generator&& o) noexcept {
    if (this != &o) {
      reset();
      m_handle = std::exchange(o.m_handle, nullptr);
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

  /// Stops the generator: destroys its frame (see the file comment).
  /// Awaitable for asyncio's spelling; completes at once.
  std::suspend_never aclose() noexcept {
    reset();
    return {};
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
