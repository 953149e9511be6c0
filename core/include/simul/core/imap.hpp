#pragma once

// simul::imap_range: the one chunked-map engine behind every pool's `map`,
// `imap` and `imap_unordered` (and `simul::map` on any executor).
//
//   for (int square : pool.imap([](int x) { return x * x; }, std::views::iota(0), {.chunksize = 100})) {
//     if (square > 1'000'000) break;
//   }
//
// The input is read in chunks of `chunksize` items; each chunk is handed to a
// submitter (one task of the pool: a closure for the thread pool, one message
// for the process and MPI pools) that returns a future of the chunk's results.
// At most `max_inflight` chunks are in flight: a new chunk is read and
// submitted only when the consumer takes the results of one, so an endless or
// huge input costs memory for `max_inflight * chunksize` items and results,
// never more. Work starts when the range is made. `Ordered` ranges yield
// results in input order (`imap`); the others in the order chunks complete,
// each chunk's items in order (`imap_unordered`). A pool's eager `map` is the
// same range collected into a vector.
//
// Errors: the first exception the consumer reaches (in input order for an
// ordered range) is rethrown by the `next()` or iterator increment that
// reaches it, after the chunks still queued were cancelled; if `timeout`
// (counted from the making of the range) passes while waiting,
// `timeout_error` is thrown the same way. After an error the range is
// finished.
//
// Thread-safety: one consumer thread at a time; the work runs on the pool.
// Lifetime: the range must not outlive the pool. An lvalue input range is
// referenced and must outlive the range; an rvalue input is moved in.
// Destroying the range cancels its queued chunks and (for in-process pools,
// whose tasks may use what the caller owns) waits for the running ones. The
// range can be neither copied nor moved (it holds iterators into its input).

#include <simul/core/error.hpp>
#include <simul/core/future.hpp>
#include <simul/core/wait.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul {

/// How `map`, `imap` and `imap_unordered` split and bound their work, on
/// every executor. Members stay in this order for designated initializers.
struct map_options {
  std::size_t chunksize = 1;                     ///< items per task (0 is taken as 1)
  std::chrono::nanoseconds timeout = no_timeout; ///< for the whole call, counted from it
  /// Chunks submitted ahead of the consumer. 0: two per worker for `imap`,
  /// `imap_unordered` and the thread pool's `map`; no bound (everything at
  /// once) for the process and MPI pools' `map` and for `simul::map`.
  std::size_t max_inflight = 0;
};

/// The process and MPI pools' name for the same options (one struct).
using imap_options = map_options;

namespace detail {

template <class F>
struct future_value;
template <class T>
struct future_value<future<T>> {
  using type = T;
};

/// Runs `fn` over one chunk of items, in this process.
template <class Fn, class Item>
struct apply_to_chunk {
  Fn fn;
  auto operator()(std::vector<Item> part) {
    using result_t = std::invoke_result_t<Fn&, Item&>;
    std::vector<result_t> out;
    out.reserve(part.size());
    for (auto& item : part) {
      out.push_back(std::invoke(fn, item));
    }
    return out;
  }
};

/// The submitter of an in-process executor: one chunk is one `submit`.
template <class Executor, class Fn>
struct chunk_submitter {
  Executor* executor;
  Fn fn;
  /// Tasks may use what the caller owns: destroying the range waits for them.
  static constexpr bool waits_for_running = true;

  template <class Item>
  auto operator()(std::vector<Item>&& chunk) {
    return executor->submit(apply_to_chunk<Fn, Item>{fn}, std::move(chunk));
  }
};

template <class Submit>
constexpr bool waits_for_running() {
  if constexpr (requires { Submit::waits_for_running; }) {
    return Submit::waits_for_running;
  } else {
    return true;
  }
}

/// `max_inflight` for a lazy range: the option, or two per worker.
inline std::size_t lazy_inflight(const map_options& options, std::size_t workers) noexcept {
  return options.max_inflight != 0 ? options.max_inflight : 2 * std::max<std::size_t>(workers, 1);
}

/// `max_inflight` for an eager map: the option, or no bound.
inline std::size_t eager_inflight(const map_options& options) noexcept {
  return options.max_inflight != 0 ? options.max_inflight : std::numeric_limits<std::size_t>::max();
}

} // namespace detail

/// The lazy results of a chunked map; see the file comment.
/// `Submit` is callable as `submit(std::vector<item>&&)` and returns a
/// `simul::future<std::vector<result>>`.
template <class Submit, class View, bool Ordered = true>
class imap_range {
 public:
  using item_type = std::ranges::range_value_t<View>;
  using chunk_future = std::invoke_result_t<Submit&, std::vector<item_type>&&>;
  using value_type = typename detail::future_value<chunk_future>::type::value_type;

  /// Starts the work: submits the first `max_inflight` chunks. `who` names
  /// the call in error messages ("thread_pool::imap").
  imap_range(Submit submit, View items, map_options options, std::size_t max_inflight, const char* who)
      : m_submit(std::move(submit)), m_items(std::move(items)),
        m_chunksize(std::max<std::size_t>(options.chunksize, 1)),
        m_max_inflight(std::max<std::size_t>(max_inflight, 1)),
        m_deadline(options.timeout == no_timeout ? std::chrono::steady_clock::time_point::max()
                                                 : detail::deadline_after(options.timeout)),
        m_who(who), m_next(std::ranges::begin(m_items)) {
    try {
      refill();
    } catch (...) {
      // The destructor will not run: settle the chunks already submitted.
      settle();
      throw;
    }
  }

  imap_range(const imap_range&) = delete;
  imap_range& operator=(const imap_range&) = delete;

  ~imap_range() { settle(); }

  /// The next result, or nullopt when the input is exhausted.
  /// Rethrows the work's exception, or throws `timeout_error`.
  std::optional<value_type> next() {
    while (m_position == m_current.size()) {
      if (m_in_flight.empty()) {
        return std::nullopt;
      }
      take_chunk();
      refill();
    }
    return std::move(m_current[m_position++]);
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
    using value_type = imap_range::value_type;
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
    friend class imap_range;
    explicit iterator(imap_range* owner) : m_owner(owner) {}
    [[nodiscard]] bool at_end() const { return m_owner == nullptr || !m_owner->m_current_value; }
    imap_range* m_owner = nullptr;
  };

  /// Starts the iteration (takes the first result). Call once.
  iterator begin() {
    advance();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  void advance() { m_current_value = next(); }

  // Moves the results of the next chunk (the oldest, or the first done) into
  // m_current; on an error or the deadline, settles the range and throws.
  void take_chunk() {
    auto chunk = m_in_flight.begin();
    if constexpr (Ordered) {
      wait_for(*chunk);
    } else {
      chunk = std::find_if(m_in_flight.begin(), m_in_flight.end(), [](const chunk_future& f) { return f.ready(); });
      if (chunk == m_in_flight.end()) {
        const auto left =
            m_deadline == std::chrono::steady_clock::time_point::max()
                ? no_timeout
                : std::chrono::duration_cast<std::chrono::nanoseconds>(std::max(
                      m_deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration::zero()));
        (void)simul::wait(m_in_flight, return_when::first_completed, left);
        chunk = std::find_if(m_in_flight.begin(), m_in_flight.end(), [](const chunk_future& f) { return f.ready(); });
        if (chunk == m_in_flight.end()) {
          fail_on_deadline();
        }
      }
    }
    auto done = std::move(*chunk);
    m_in_flight.erase(chunk);
    try {
      m_current = done.get();
    } catch (...) {
      settle();
      throw;
    }
    m_position = 0;
  }

  void wait_for(const chunk_future& chunk) {
    if (!chunk.wait_until(m_deadline)) {
      fail_on_deadline();
    }
  }

  [[noreturn]] void fail_on_deadline() {
    const auto unfinished = m_in_flight.size();
    settle();
    throw timeout_error(std::string(m_who) + ": " + std::to_string(unfinished) +
                        " chunk(s) unfinished when the timeout passed");
  }

  // Reads and submits chunks until `m_max_inflight` are in flight or the input ends.
  void refill() {
    while (!m_input_done && m_in_flight.size() < m_max_inflight) {
      std::vector<item_type> chunk;
      chunk.reserve(std::min<std::size_t>(m_chunksize, 4096));
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
      m_in_flight.push_back(m_submit(std::move(chunk)));
    }
  }

  // Cancels what is queued, waits for what runs (in-process pools), and ends the range.
  void settle() noexcept {
    for (auto& f : m_in_flight) {
      f.cancel();
    }
    if constexpr (detail::waits_for_running<Submit>()) {
      for (auto& f : m_in_flight) {
        f.wait();
      }
    }
    m_in_flight.clear();
    m_current.clear();
    m_position = 0;
    m_input_done = true;
  }

  Submit m_submit;
  View m_items;
  std::size_t m_chunksize;
  std::size_t m_max_inflight;
  std::chrono::steady_clock::time_point m_deadline;
  const char* m_who;
  std::ranges::iterator_t<View> m_next;
  bool m_input_done = false;
  std::deque<chunk_future> m_in_flight;
  std::vector<value_type> m_current;
  std::size_t m_position = 0;
  std::optional<value_type> m_current_value;
};

} // namespace simul
