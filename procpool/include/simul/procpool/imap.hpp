#pragma once

// process_pool::imap and imap_unordered: lazy maps with bounded work in flight
// (multiprocessing.Pool.imap / imap_unordered).
//
//   for (int r : procs.imap(square, numbers, {.chunksize = 64, .max_inflight = 4})) use(r);
//
// Iterating submits chunks of `chunksize` items ahead of the consumer, never
// more than `max_inflight` chunks at once, so an endless input range works and
// memory stays bounded. `imap` yields results in input order; `imap_unordered`
// in the order chunks complete (each chunk's items stay in order). An
// exception from a task is rethrown by the iterator step that reaches it.
//
// Thread-safety: one range, one consuming thread. Lifetime: the range refers to
// the pool (which must outlive it) and to an lvalue input range (likewise); an
// rvalue input is moved in. Destroying the range cancels chunks not started.

#include <simul/core/wait.hpp>
#include <simul/procpool/process_pool.hpp>

#include <cstddef>
#include <deque>
#include <iterator>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul {

/// The range `imap` / `imap_unordered` return (an input range), for any pool
/// whose private `submit_chunk(fn, items)` sends one chunk as one task: the
/// process pool's and the MPI pool's.
template <class Pool, class Fn, class View, bool Ordered>
class imap_range {
 public:
  using item_type = std::ranges::range_value_t<View>;
  using value_type = std::invoke_result_t<Fn&, item_type&>;

  /// `workers`: the pool's workers; `max_inflight` 0 means two chunks each.
  imap_range(Pool& pool, Fn fn, View view, imap_options options, std::size_t workers)
      : m_pool(&pool), m_fn(fn), m_view(std::move(view)),
        m_chunksize(options.chunksize == 0 ? std::size_t{1} : options.chunksize),
        m_max_inflight(options.max_inflight == 0 ? 2 * workers : options.max_inflight) {}
  imap_range(imap_range&&) noexcept = default;
  imap_range& operator=(imap_range&&) noexcept = default;
  imap_range(const imap_range&) = delete;
  imap_range& operator=(const imap_range&) = delete;
  ~imap_range() {
    for (auto& f : m_inflight) {
      if (f.valid()) {
        f.cancel();
      }
    }
  }

  class iterator {
   public:
    using value_type = imap_range::value_type;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(imap_range* range) : m_range(range) {}
    value_type& operator*() const { return *m_range->m_current; }
    iterator& operator++() {
      m_range->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    [[nodiscard]] bool at_end() const { return m_range->m_done; }
    imap_range* m_range = nullptr;
  };

  /// Starts the work and waits for the first result. Callable once.
  iterator begin() {
    m_it = std::ranges::begin(m_view);
    advance();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  void fill() {
    while (m_inflight.size() < m_max_inflight && *m_it != std::ranges::end(m_view)) {
      std::vector<item_type> chunk;
      chunk.reserve(m_chunksize);
      for (; *m_it != std::ranges::end(m_view) && chunk.size() < m_chunksize; ++*m_it) {
        chunk.push_back(**m_it);
      }
      m_inflight.push_back(m_pool->submit_chunk(m_fn, chunk));
    }
  }

  std::vector<value_type> take_next_chunk() {
    if constexpr (Ordered) {
      auto f = std::move(m_inflight.front());
      m_inflight.pop_front();
      return f.get();
    } else {
      for (;;) {
        for (auto it = m_inflight.begin(); it != m_inflight.end(); ++it) {
          if (it->ready()) {
            auto f = std::move(*it);
            m_inflight.erase(it);
            return f.get();
          }
        }
        (void)simul::wait(m_inflight, return_when::first_completed);
      }
    }
  }

  void advance() {
    while (m_ready.empty()) {
      fill();
      if (m_inflight.empty()) {
        m_done = true;
        m_current.reset();
        return;
      }
      auto part = take_next_chunk();
      for (auto& r : part) {
        m_ready.push_back(std::move(r));
      }
      fill();
    }
    m_current.emplace(std::move(m_ready.front()));
    m_ready.pop_front();
  }

  Pool* m_pool;
  Fn m_fn;
  View m_view;
  std::optional<std::ranges::iterator_t<View>> m_it;
  std::size_t m_chunksize;
  std::size_t m_max_inflight;
  std::deque<future<std::vector<value_type>>> m_inflight;
  std::deque<value_type> m_ready;
  std::optional<value_type> m_current;
  bool m_done = false;
};

template <class F, std::ranges::input_range R>
auto process_pool::imap(F&& fn, R&& items, imap_options options) {
  using Fn = std::decay_t<F>;
  using View = std::views::all_t<R>;
  static_assert(detail::check_task<Fn, std::ranges::range_value_t<R>>());
  return imap_range<process_pool, Fn, View, true>(*this, Fn(fn), std::views::all(std::forward<R>(items)), options,
                                                  worker_count());
}

template <class F, std::ranges::input_range R>
auto process_pool::imap_unordered(F&& fn, R&& items, imap_options options) {
  using Fn = std::decay_t<F>;
  using View = std::views::all_t<R>;
  static_assert(detail::check_task<Fn, std::ranges::range_value_t<R>>());
  return imap_range<process_pool, Fn, View, false>(*this, Fn(fn), std::views::all(std::forward<R>(items)), options,
                                                   worker_count());
}

} // namespace simul
