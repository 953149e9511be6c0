#pragma once

// simul::map_results: the lazy, ordered result of `thread_pool::imap`.
//
//   for (int square : pool.imap([](int x) { return x * x; }, std::views::iota(0), {.chunksize = 100})) {
//     if (square > 1'000'000) break;
//   }
//
// The input is read in chunks of `chunksize` items, each chunk is one task,
// and at most `lookahead` chunks are in flight: a new chunk is read and
// submitted only when the consumer takes the results of the oldest one. So an
// endless or huge input costs memory for `lookahead * chunksize` items and
// results, never more. Results come out in input order.
//
// Errors: the first exception, in input order, is rethrown by the `next()`
// (or iterator increment) that reaches it; the chunks still queued are
// cancelled first. If `timeout` (counted from the `imap` call) passes while
// waiting, `timeout_error` is thrown the same way. After an error the range
// is finished.
//
// Thread-safety: one consumer thread at a time; the work runs on the pool.
// Lifetime: the range must not outlive the pool. An lvalue input range is
// referenced and must outlive the range; an rvalue input is moved in.
// Destroying the range cancels its queued chunks and waits for the running
// ones, so no task touches `f` or the input after it is gone. The range can
// be neither copied nor moved (it holds iterators into its own input).

#include <simul/core/error.hpp>
#include <simul/core/future.hpp>
#include <simul/core/map.hpp>
#include <simul/core/wait.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <iterator>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul {

/// The lazy, ordered results of `thread_pool::imap`; see the file comment.
template <class Executor, class View, class Fn>
class map_results {
 public:
  using item_type = std::ranges::range_value_t<View>;
  using value_type = std::invoke_result_t<Fn&, item_type&>;
  static_assert(!std::is_void_v<value_type>, "thread_pool::map: the function must return a value");

  map_results(Executor& ex, View items, Fn fn, map_options options, std::size_t lookahead)
      : m_ex(ex), m_items(std::move(items)), m_fn(std::move(fn)),
        m_chunksize(std::max<std::size_t>(options.chunksize, 1)), m_lookahead(std::max<std::size_t>(lookahead, 1)),
        m_deadline(options.timeout == no_timeout ? std::chrono::steady_clock::time_point::max()
                                                 : detail::deadline_after(options.timeout)),
        m_next(std::ranges::begin(m_items)) {
    try {
      refill();
    } catch (...) {
      // The destructor will not run: settle the chunks already submitted.
      settle();
      throw;
    }
  }

  map_results(const map_results&) = delete;
  map_results& operator=(const map_results&) = delete;

  ~map_results() { settle(); }

  /// The next result in input order, or nullopt when the input is exhausted.
  /// Rethrows the work's exception, or throws `timeout_error`.
  std::optional<value_type> next() {
    for (;;) {
      if (m_position < m_current.size()) {
        return std::move(m_current[m_position++]);
      }
      if (m_in_flight.empty()) {
        return std::nullopt;
      }
      auto& oldest = m_in_flight.front();
      if (!oldest.wait_until(m_deadline)) {
        const auto unfinished = m_in_flight.size();
        settle();
        throw timeout_error("thread_pool::map: " + std::to_string(unfinished) +
                            " chunk(s) unfinished when the timeout passed");
      }
      try {
        m_current = oldest.get();
      } catch (...) {
        m_in_flight.pop_front();
        settle();
        throw;
      }
      m_in_flight.pop_front();
      m_position = 0;
      refill();
    }
  }

  /// Collects every remaining result.
  std::vector<value_type> to_vector() {
    std::vector<value_type> out;
    if constexpr (std::ranges::sized_range<View>) {
      out.reserve(std::ranges::size(m_items));
    }
    while (auto value = next()) {
      out.push_back(std::move(*value));
    }
    return out;
  }

  /// `std::vector<T> v = pool.imap(...)` collects the results.
  operator std::vector<value_type>() && { return to_vector(); } // NOLINT(google-explicit-constructor)

  /// An input iterator over the results (each is taken once).
  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = map_results::value_type;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    value_type& operator*() const { return *m_owner->m_current_value; }
    iterator& operator++() {
      m_owner->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    friend class map_results;
    explicit iterator(map_results* owner) : m_owner(owner) {}
    [[nodiscard]] bool at_end() const { return m_owner == nullptr || !m_owner->m_current_value; }
    map_results* m_owner = nullptr;
  };

  /// Starts the iteration (takes the first result). Call once.
  iterator begin() {
    advance();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  void advance() { m_current_value = next(); }

  // Reads and submits chunks until `m_lookahead` are in flight or the input ends.
  void refill() {
    while (!m_input_done && m_in_flight.size() < m_lookahead) {
      std::vector<item_type> chunk;
      chunk.reserve(m_chunksize);
      while (chunk.size() < m_chunksize && m_next != std::ranges::end(m_items)) {
        chunk.push_back(*m_next);
        ++m_next;
      }
      if (m_next == std::ranges::end(m_items)) {
        m_input_done = true;
      }
      if (chunk.empty()) {
        break;
      }
      m_in_flight.push_back(m_ex.submit(
          [fn = m_fn](std::vector<item_type> part) mutable {
            std::vector<value_type> out;
            out.reserve(part.size());
            for (auto& item : part) {
              out.push_back(std::invoke(fn, item));
            }
            return out;
          },
          std::move(chunk)));
    }
  }

  // Cancels what is queued, waits for what runs, and ends the range.
  void settle() noexcept {
    for (auto& f : m_in_flight) {
      f.cancel();
    }
    for (auto& f : m_in_flight) {
      f.wait();
    }
    m_in_flight.clear();
    m_current.clear();
    m_position = 0;
    m_input_done = true;
  }

  Executor& m_ex;
  View m_items;
  Fn m_fn;
  std::size_t m_chunksize;
  std::size_t m_lookahead;
  std::chrono::steady_clock::time_point m_deadline;
  std::ranges::iterator_t<View> m_next;
  bool m_input_done = false;
  std::deque<future<std::vector<value_type>>> m_in_flight;
  std::vector<value_type> m_current;
  std::size_t m_position = 0;
  std::optional<value_type> m_current_value;
};

} // namespace simul
