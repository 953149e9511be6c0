#pragma once

// mpi_pool::imap and imap_unordered: lazy maps with bounded work in flight,
// as process_pool's.
//
//   for (int r : pool.imap(square, numbers, {.chunksize = 64, .max_inflight = 8})) use(r);
//
// Iterating submits chunks of `chunksize` items ahead of the consumer, never
// more than `max_inflight` chunks at once (0: two per worker rank), so an
// endless input range works and memory stays bounded. `imap` yields results
// in input order; `imap_unordered` in the order chunks complete (each
// chunk's items stay in order). An exception from a task is rethrown by the
// iterator step that reaches it.
//
// Thread-safety: one range, one consuming thread. Lifetime: the range refers
// to the pool (which must outlive it) and to an lvalue input range
// (likewise); an rvalue input is moved in. Destroying the range cancels the
// chunks not yet sent.

#include <simul/core/wait.hpp>
#include <simul/mpipool/mpi_pool.hpp>

#include <cstddef>
#include <deque>
#include <iterator>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul {

/// The range `mpi_pool::imap` / `imap_unordered` return (an input range).
template <class Fn, class View, bool Ordered>
class mpi_imap_range {
 public:
  using item_type = std::ranges::range_value_t<View>;
  using value_type = std::invoke_result_t<Fn&, item_type&>;

  mpi_imap_range(mpi_pool& pool, Fn fn, View view, imap_options options)
      : m_pool(&pool), m_fn(fn), m_view(std::move(view)),
        m_chunksize(options.chunksize == 0 ? std::size_t{1} : options.chunksize),
        m_max_inflight(options.max_inflight == 0 ? 2 * pool.workers() : options.max_inflight) {}
  mpi_imap_range(mpi_imap_range&&) noexcept = default;
  mpi_imap_range& operator=(mpi_imap_range&&) noexcept = default;
  mpi_imap_range(const mpi_imap_range&) = delete;
  mpi_imap_range& operator=(const mpi_imap_range&) = delete;
  ~mpi_imap_range() {
    for (auto& pending : m_inflight) {
      if (pending.valid()) {
        pending.cancel();
      }
    }
  }

  class iterator {
   public:
    using value_type = mpi_imap_range::value_type;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(mpi_imap_range* range) : m_range(range) {}
    value_type& operator*() const { return *m_range->m_current; }
    iterator& operator++() {
      m_range->step();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    [[nodiscard]] bool at_end() const { return m_range->m_done; }
    mpi_imap_range* m_range = nullptr;
  };

  /// Starts the work and waits for the first result. Callable once.
  iterator begin() {
    m_it = std::ranges::begin(m_view);
    step();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  bool input_left() const { return *m_it != std::ranges::end(m_view); }

  void top_up() {
    while (m_inflight.size() < m_max_inflight && input_left()) {
      std::vector<item_type> chunk;
      chunk.reserve(m_chunksize);
      while (input_left() && chunk.size() < m_chunksize) {
        chunk.push_back(**m_it);
        ++*m_it;
      }
      m_inflight.push_back(m_pool->submit_chunk(m_fn, chunk));
    }
  }

  // The next finished chunk: the oldest (imap) or any ready one (imap_unordered).
  future<std::vector<value_type>> next_done() {
    if constexpr (!Ordered) {
      while (true) {
        for (auto pos = m_inflight.begin(); pos != m_inflight.end(); ++pos) {
          if (pos->ready()) {
            auto done = std::move(*pos);
            m_inflight.erase(pos);
            return done;
          }
        }
        (void)simul::wait(m_inflight, return_when::first_completed);
      }
    }
    auto done = std::move(m_inflight.front());
    m_inflight.pop_front();
    return done;
  }

  void step() {
    while (m_ready.empty()) {
      top_up();
      if (m_inflight.empty()) {
        m_done = true;
        m_current.reset();
        return;
      }
      for (auto& r : next_done().get()) {
        m_ready.push_back(std::move(r));
      }
    }
    top_up();
    m_current.emplace(std::move(m_ready.front()));
    m_ready.pop_front();
  }

  mpi_pool* m_pool;
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
auto mpi_pool::imap(F&& fn, R&& items, imap_options options) {
  using Fn = std::decay_t<F>;
  static_assert(detail::check_mpi_task<Fn, std::ranges::range_value_t<R>>());
  return mpi_imap_range<Fn, std::views::all_t<R>, true>(*this, Fn(fn), std::views::all(std::forward<R>(items)),
                                                        options);
}

template <class F, std::ranges::input_range R>
auto mpi_pool::imap_unordered(F&& fn, R&& items, imap_options options) {
  using Fn = std::decay_t<F>;
  static_assert(detail::check_mpi_task<Fn, std::ranges::range_value_t<R>>());
  return mpi_imap_range<Fn, std::views::all_t<R>, false>(*this, Fn(fn), std::views::all(std::forward<R>(items)),
                                                         options);
}

} // namespace simul
