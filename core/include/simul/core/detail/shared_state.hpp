#pragma once

// The state a promise and its future share.
//
// One allocation holds the reference count, a 32-bit status word, the result
// and the list of completion callbacks. The status word is the only thing the
// fast path touches: the producer claims it, writes the result, and publishes
// with one atomic read-modify-write; a waiter that finds it ready reads the
// result without a lock. Only a waiter that must sleep marks the word, and only
// then does the producer make a futex system call.

#include <simul/core/detail/futex.hpp>
#include <simul/core/detail/spin.hpp>
#include <simul/core/detail/unique_function.hpp>
#include <simul/core/error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include <sched.h>

namespace simul {

/// A thread's way of doing useful work while it waits on a future.
///
/// An executor installs one on its worker threads (see
/// `scoped_cooperative_waiter`); `future::wait` and `future::get` on such a
/// thread call `run_one()` instead of blocking, so a task that waits for
/// another task of the same pool runs queued work rather than deadlocking.
///
/// Thread-safety: `run_one()` is only ever called on the thread that installed it.
class cooperative_waiter {
 public:
  /// Runs one unit of pending work; returns false when there was none.
  virtual bool run_one() = 0;

 protected:
  ~cooperative_waiter() = default;
};

namespace detail {
inline thread_local cooperative_waiter* t_cooperative_waiter = nullptr;
} // namespace detail

/// Installs a cooperative waiter for the current thread for the scope's lifetime.
///
/// Lifetime: the waiter must outlive the scope; scopes nest and restore the
/// previous waiter when they end.
class scoped_cooperative_waiter {
 public:
  explicit scoped_cooperative_waiter(cooperative_waiter* waiter) noexcept
      : m_previous(std::exchange(detail::t_cooperative_waiter, waiter)) {}
  ~scoped_cooperative_waiter() { detail::t_cooperative_waiter = m_previous; }
  scoped_cooperative_waiter(const scoped_cooperative_waiter&) = delete;
  scoped_cooperative_waiter& operator=(const scoped_cooperative_waiter&) = delete;

 private:
  cooperative_waiter* m_previous;
};

namespace detail {

/// Where an exception thrown by a future's `on_ready` callback goes: a
/// function the event loop installs (it reports to the running loop's
/// exception handler); without one, a line on stderr. Never terminates.
using callback_error_sink = void (*)(std::exception_ptr error) noexcept;
inline std::atomic<callback_error_sink> g_callback_error_sink{nullptr};

/// The fallback: one line on stderr.
inline void print_callback_error(const std::exception_ptr& error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "simul: a future's on_ready callback threw: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "simul: a future's on_ready callback threw a non-standard exception\n");
  }
}

inline void report_callback_error(std::exception_ptr error) noexcept {
  if (auto* sink = g_callback_error_sink.load(std::memory_order_acquire)) {
    sink(std::move(error));
    return;
  }
  print_callback_error(error);
}

class state_base {
 public:
  // The low two bits of the word are the status; the others are flags.
  static constexpr std::uint32_t k_pending = 0;    // not started
  static constexpr std::uint32_t k_running = 1;    // the producer started the work
  static constexpr std::uint32_t k_completing = 2; // someone is writing the result
  static constexpr std::uint32_t k_ready = 3;      // the result is published
  static constexpr std::uint32_t k_status_mask = 3;
  static constexpr std::uint32_t k_cancelled = 4;  // the result is a cancellation
  static constexpr std::uint32_t k_waiters = 8;    // a thread sleeps on the word
  static constexpr std::uint32_t k_retrieved = 16; // the future's value was taken
  static constexpr std::uint32_t k_no_spin = 32;   // waiters sleep at once (see set_waiters_sleep)
  static constexpr std::chrono::microseconds k_yield_spin{50};

  state_base() = default;
  state_base(const state_base&) = delete;
  state_base& operator=(const state_base&) = delete;

  void add_ref() noexcept { m_refs.fetch_add(1, std::memory_order_relaxed); }

  void release() noexcept {
    if (m_refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      delete this;
    }
  }

  [[nodiscard]] bool ready() const noexcept {
    return (m_word.load(std::memory_order_acquire) & k_status_mask) == k_ready;
  }

  [[nodiscard]] bool cancelled() const noexcept {
    const auto word = m_word.load(std::memory_order_acquire);
    return (word & k_status_mask) == k_ready && (word & k_cancelled) != 0;
  }

  /// Only meaningful once ready.
  [[nodiscard]] const std::exception_ptr& error() const noexcept { return m_error; }

  /// The producer started the work and has not given its result yet.
  [[nodiscard]] bool running() const noexcept {
    const auto status = m_word.load(std::memory_order_acquire) & k_status_mask;
    return status == k_running || status == k_completing;
  }

  /// Ready with an exception that is not a cancellation (FIRST_EXCEPTION's test).
  [[nodiscard]] bool failed() const noexcept { return ready() && !cancelled() && m_error != nullptr; }

  /// Marks the work as started. False if it was cancelled first (it must not run).
  bool set_running() noexcept {
    auto word = m_word.load(std::memory_order_acquire);
    while ((word & k_status_mask) == k_pending) {
      if (m_word.compare_exchange_weak(word, (word & ~k_status_mask) | k_running, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        return true;
      }
    }
    return (word & k_status_mask) == k_running;
  }

  /// Takes the exclusive right to write the result. False if it is already taken.
  bool claim() noexcept { return claim_from(k_running); }

  /// Publishes the result written after a successful `claim()`.
  void publish(bool cancelled) noexcept {
    const auto previous = m_word.fetch_or(k_ready | (cancelled ? k_cancelled : 0), std::memory_order_acq_rel);
    if ((previous & k_waiters) != 0) {
      futex_wake_all(m_word);
    }
    run_callbacks();
  }

  /// Cancels the work: a pending task completes as cancelled; a running one is
  /// asked through the producer's hook. True if the cancellation took or was accepted.
  bool request_cancel() {
    if (cancelled()) {
      return true; // concurrent.futures: cancelling a cancelled future is true again
    }
    if (claim_from(k_pending)) {
      m_error = std::make_exception_ptr(cancelled_error("future was cancelled"));
      publish(true);
      return true;
    }
    auto* hook = m_cancel_hook.load(std::memory_order_acquire);
    if (hook != nullptr && (m_word.load(std::memory_order_acquire) & k_status_mask) == k_running) {
      return (*hook)();
    }
    return false;
  }

  /// Installs the producer's cancel hook; at most once per state.
  void set_cancel_hook(unique_function<bool()> hook) {
    auto* fresh = new unique_function<bool()>(std::move(hook));
    unique_function<bool()>* expected = nullptr;
    if (!m_cancel_hook.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) {
      delete fresh;
      throw simul::error("promise::set_cancel_hook: a cancel hook is already installed");
    }
  }

  /// Waiters on this state sleep at once instead of spinning first: for a
  /// producer that itself polls on a thread of this process (mpi_pool's
  /// progress thread), where a spinning waiter would take the core that
  /// thread needs to see the result arrive. Call before the future is shared.
  void set_waiters_sleep() noexcept { m_word.fetch_or(k_no_spin, std::memory_order_relaxed); }
  [[nodiscard]] bool waiters_sleep() const noexcept {
    return (m_word.load(std::memory_order_relaxed) & k_no_spin) != 0;
  }

  /// Marks the value as taken; true the first time only.
  bool mark_retrieved() noexcept {
    return (m_word.fetch_or(k_retrieved, std::memory_order_acq_rel) & k_retrieved) == 0;
  }

  void wait() const { (void)wait_until(std::chrono::steady_clock::time_point::max()); }

  /// Blocks until ready or until the deadline; true if ready. On a thread with a
  /// cooperative waiter, runs other work instead of sleeping.
  bool wait_until(std::chrono::steady_clock::time_point deadline) const {
    if (ready()) {
      return true;
    }
    auto* helper = t_cooperative_waiter;
    if (helper == nullptr && !waiters_sleep() && spin_until_ready(deadline)) {
      return true;
    }
    auto nap = std::chrono::microseconds(20);
    for (;;) {
      auto word = m_word.load(std::memory_order_acquire);
      if ((word & k_status_mask) == k_ready) {
        return true;
      }
      if (helper != nullptr && helper->run_one()) {
        continue;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) {
        return false;
      }
      if ((word & k_waiters) == 0) {
        if (!m_word.compare_exchange_weak(word, word | k_waiters, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
          continue;
        }
        word |= k_waiters;
      }
      auto until = deadline;
      if (helper != nullptr) {
        // Work may be queued while we sleep; nap briefly and look again.
        until = std::min(deadline, now + nap);
        nap = std::min<std::chrono::microseconds>(nap * 2, std::chrono::milliseconds(1));
      }
      futex_wait_until(m_word, word, until);
    }
  }

  /// A result that is microseconds away is caught without sleeping: a short
  /// busy spin, then up to `k_yield_spin` of giving the CPU to whatever else
  /// is runnable. Falling asleep on the futex and being woken costs two
  /// context switches, which is the larger part of a round trip to another
  /// process on a small or virtual machine.
  bool spin_until_ready(std::chrono::steady_clock::time_point deadline) const noexcept {
    for (int i = 0; i < 128; ++i) {
      cpu_relax();
      if (ready()) {
        return true;
      }
    }
    const auto until = std::min(deadline, std::chrono::steady_clock::now() + k_yield_spin);
    while (std::chrono::steady_clock::now() < until) {
      ::sched_yield();
      if (ready()) {
        return true;
      }
    }
    return false;
  }

  /// Runs `callback(*this)` once the state is ready: now, on this thread, if it
  /// already is; otherwise on the thread that completes it. Callbacks must not throw.
  void add_callback(unique_function<void(state_base&)> callback) {
    if (ready()) {
      callback(*this);
      return;
    }
    auto* node = new callback_node{nullptr, std::move(callback)};
    auto* head = m_callbacks.load(std::memory_order_acquire);
    do {
      if (head == closed()) {
        node->fn(*this);
        delete node;
        return;
      }
      node->next = head;
    } while (!m_callbacks.compare_exchange_weak(head, node, std::memory_order_acq_rel, std::memory_order_acquire));
  }

 protected:
  virtual ~state_base() {
    auto* head = m_callbacks.load(std::memory_order_relaxed);
    while (head != nullptr && head != closed()) {
      delete std::exchange(head, head->next);
    }
    delete m_cancel_hook.load(std::memory_order_relaxed);
  }

  std::exception_ptr m_error;

 private:
  struct callback_node {
    callback_node* next;
    unique_function<void(state_base&)> fn;
  };

  static callback_node* closed() noexcept {
    static callback_node marker{nullptr, nullptr};
    return &marker;
  }

  bool claim_from(std::uint32_t highest) noexcept {
    auto word = m_word.load(std::memory_order_acquire);
    while ((word & k_status_mask) <= highest) {
      if (m_word.compare_exchange_weak(word, (word & ~k_status_mask) | k_completing, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        return true;
      }
    }
    return false;
  }

  void run_callbacks() noexcept {
    auto* head = m_callbacks.exchange(closed(), std::memory_order_acq_rel);
    // The list is newest first; run them in the order they were added.
    callback_node* ordered = nullptr;
    while (head != nullptr) {
      auto* next = head->next;
      head->next = ordered;
      ordered = head;
      head = next;
    }
    while (ordered != nullptr) {
      auto* next = ordered->next;
      ordered->fn(*this);
      delete ordered;
      ordered = next;
    }
  }

  std::atomic<std::uint32_t> m_refs{1};
  mutable std::atomic<std::uint32_t> m_word{k_pending};
  std::atomic<callback_node*> m_callbacks{nullptr};
  std::atomic<unique_function<bool()>*> m_cancel_hook{nullptr};
};

template <class T>
using stored_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
class shared_state final : public state_base {
 public:
  template <class... Args>
  void emplace_value(Args&&... args) {
    m_value.emplace(std::forward<Args>(args)...);
  }
  void store_error(std::exception_ptr error) noexcept { m_error = std::move(error); }
  std::optional<stored_t<T>>& value() noexcept { return m_value; }

 private:
  std::optional<stored_t<T>> m_value;
};

/// An intrusive reference to a shared state.
template <class S>
class state_ref {
 public:
  state_ref() noexcept = default;
  /// Adopts a reference the caller already holds.
  explicit state_ref(S* state) noexcept : m_state(state) {}
  state_ref(const state_ref& other) noexcept : m_state(other.m_state) {
    if (m_state != nullptr) {
      m_state->add_ref();
    }
  }
  state_ref(state_ref&& other) noexcept : m_state(std::exchange(other.m_state, nullptr)) {}
  state_ref& operator=(state_ref other) noexcept {
    std::swap(m_state, other.m_state);
    return *this;
  }
  ~state_ref() {
    if (m_state != nullptr) {
      m_state->release();
    }
  }

  S* get() const noexcept { return m_state; }
  S* operator->() const noexcept { return m_state; }
  explicit operator bool() const noexcept { return m_state != nullptr; }

 private:
  S* m_state = nullptr;
};

} // namespace detail
} // namespace simul
