#pragma once

// Waiting on many futures at once: `wait` and `as_completed`, as in concurrent.futures.
//
//   auto [done, not_done] = simul::wait(futures, simul::return_when::first_completed, 100ms);
//   for (auto& f : simul::as_completed(futures)) use(f.get());
//
// Both take the futures by reference and leave them with the caller: `wait`
// returns pointers to them, `as_completed` yields references to them. The
// futures must outlive the result. They may come from different executors.
//
// Thread-safety: call from one thread; the futures may be completed by any.

#include <simul/core/detail/futex.hpp>
#include <simul/core/error.hpp>
#include <simul/core/future.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iterator>
#include <memory>
#include <mutex>
#include <ranges>
#include <string>
#include <vector>

namespace simul {

/// No time limit.
inline constexpr std::chrono::nanoseconds no_timeout = std::chrono::nanoseconds::max();

/// When `wait` returns (concurrent.futures' FIRST_COMPLETED and friends).
enum class return_when {
  first_completed, ///< as soon as any future is ready
  first_exception, ///< as soon as any future ends with an exception (not a cancellation), or all are ready
  all_completed,   ///< when every future is ready
};

/// The two sets `wait` returns, each in the order of the input.
template <class Future>
struct wait_result {
  std::vector<Future*> done;
  std::vector<Future*> not_done;
};

namespace detail {

template <class R>
using range_future_t = std::remove_reference_t<std::ranges::range_reference_t<R>>;

template <class T>
inline constexpr bool is_future_v = false;
template <class T>
inline constexpr bool is_future_v<future<T>> = true;

/// A range of simul::future: what `wait` and `as_completed` accept, so that
/// other modules' overloads for their own handles (the loop's tasks) never
/// compete with these.
template <class R>
concept future_range = std::ranges::forward_range<R> && is_future_v<std::remove_cv_t<range_future_t<R>>>;

/// Counts completions and wakes the one thread that waits for them.
class completion_counter {
 public:
  void notify(bool failed) noexcept {
    if (failed) {
      m_failed.store(true, std::memory_order_release);
    }
    m_events.fetch_add(1, std::memory_order_acq_rel);
    futex_wake_all(m_events);
  }
  std::uint32_t events() const noexcept { return m_events.load(std::memory_order_acquire); }
  bool failed() const noexcept { return m_failed.load(std::memory_order_acquire); }
  void wait_change(std::uint32_t seen, std::chrono::steady_clock::time_point deadline) const noexcept {
    futex_wait_until(m_events, seen, deadline);
  }

 private:
  std::atomic<std::uint32_t> m_events{0};
  std::atomic<bool> m_failed{false};
};

} // namespace detail

/// Waits until the condition `when` holds for `futures`, or until `timeout`
/// passes, and returns which futures are done. Never throws on timeout: the
/// unfinished ones are in `not_done`.
template <detail::future_range R>
auto wait(R& futures, return_when when = return_when::all_completed, std::chrono::nanoseconds timeout = no_timeout)
    -> wait_result<detail::range_future_t<R>> {
  using future_t = detail::range_future_t<R>;
  const auto deadline =
      timeout == no_timeout ? std::chrono::steady_clock::time_point::max() : detail::deadline_after(timeout);
  std::size_t total = 0;
  for (auto& f : futures) {
    if (!f.valid()) {
      throw future_error(future_errc::no_state);
    }
    ++total;
  }
  if (when == return_when::all_completed) {
    // Each future has to finish anyway: wait on them in turn, no bookkeeping.
    for (auto& f : futures) {
      if (!f.wait_until(deadline)) {
        break;
      }
    }
  } else {
    auto counter = std::make_shared<detail::completion_counter>();
    std::size_t finished = 0;
    bool failed = false;
    for (auto& f : futures) {
      if (f.ready()) {
        ++finished;
        failed = failed || detail::future_access::state(f).failed();
      } else {
        // The callback may run after `wait` returned and the future is gone:
        // it looks only at the state it is handed.
        detail::future_access::state(f).add_callback([counter](detail::state_base& s) { counter->notify(s.failed()); });
      }
    }
    const auto initially = finished;
    auto satisfied = [&](std::size_t count, bool any_failed) {
      return when == return_when::first_completed ? count > 0 : (any_failed || count == total);
    };
    while (!satisfied(finished, failed)) {
      const auto seen = counter->events();
      finished = initially + seen;
      failed = failed || counter->failed();
      if (satisfied(finished, failed) || std::chrono::steady_clock::now() >= deadline) {
        break;
      }
      counter->wait_change(seen, deadline);
    }
  }
  wait_result<future_t> result;
  for (auto& f : futures) {
    (f.ready() ? result.done : result.not_done).push_back(&f);
  }
  return result;
}

/// A single-pass range over futures in the order they complete. Produced by `as_completed`.
///
/// Advancing blocks until the next future is ready; past the deadline it
/// throws `timeout_error` naming how many are still unfinished.
template <class Future>
class as_completed_range {
  struct channel {
    std::mutex mutex;
    std::condition_variable ready;
    std::deque<Future*> finished;
  };

 public:
  class iterator {
   public:
    using value_type = Future;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    Future& operator*() const { return *m_current; }
    Future* operator->() const { return m_current; }
    iterator& operator++() {
      m_current = m_owner->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const noexcept { return m_current == nullptr; }

   private:
    friend class as_completed_range;
    explicit iterator(as_completed_range* owner) : m_owner(owner), m_current(owner->next()) {}
    as_completed_range* m_owner = nullptr;
    Future* m_current = nullptr;
  };

  template <class R>
  as_completed_range(R& futures, std::chrono::steady_clock::time_point deadline)
      : m_channel(std::make_shared<channel>()), m_deadline(deadline) {
    std::vector<Future*> pending;
    for (auto& f : futures) {
      if (!f.valid()) {
        throw future_error(future_errc::no_state);
      }
      ++m_left;
      // Already finished ones come first, in input order, as in Python.
      if (f.ready()) {
        m_channel->finished.push_back(&f);
      } else {
        pending.push_back(&f);
      }
    }
    for (auto* f : pending) {
      f->on_ready([ch = m_channel, f] {
        {
          std::lock_guard lock(ch->mutex);
          ch->finished.push_back(f);
        }
        ch->ready.notify_one();
      });
    }
  }

  /// Starts the iteration; call once.
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  Future* next() {
    if (m_left == 0) {
      return nullptr;
    }
    std::unique_lock lock(m_channel->mutex);
    if (!m_channel->ready.wait_until(lock, m_deadline, [&] { return !m_channel->finished.empty(); })) {
      throw timeout_error("as_completed: " + std::to_string(m_left) + " future(s) unfinished at the deadline");
    }
    auto* f = m_channel->finished.front();
    m_channel->finished.pop_front();
    --m_left;
    return f;
  }

  std::shared_ptr<channel> m_channel;
  std::chrono::steady_clock::time_point m_deadline;
  std::size_t m_left = 0;
};

/// The futures in `futures`, yielded as they complete. Throws `timeout_error`
/// from the iteration if they are not all done within `timeout`.
template <detail::future_range R>
auto as_completed(R& futures, std::chrono::nanoseconds timeout = no_timeout) {
  const auto deadline =
      timeout == no_timeout ? std::chrono::steady_clock::time_point::max() : detail::deadline_after(timeout);
  return as_completed_range<detail::range_future_t<R>>(futures, deadline);
}

} // namespace simul
