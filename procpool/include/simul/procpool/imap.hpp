#pragma once

// process_pool::map, imap and imap_unordered (multiprocessing.Pool.map /
// imap / imap_unordered) on the one chunked-map engine, `simul::imap_range`
// (<simul/core/imap.hpp>).
//
//   for (int r : procs.imap(square, numbers, {.chunksize = 64, .max_inflight = 4})) use(r);
//
// Each chunk of `chunksize` items travels to a worker as one message and comes
// back as one answer. `imap` keeps at most `max_inflight` chunks (0: two per
// worker) ahead of the consumer, so an endless input range works and memory
// stays bounded; `map` submits every chunk at once unless `max_inflight` is
// set. The MPI pool uses the same submitter (<simul/mpipool/imap.hpp>).
//
// Thread-safety: one range, one consuming thread. Lifetime: the range refers to
// the pool (which must outlive it) and to an lvalue input range (likewise); an
// rvalue input is moved in. Destroying the range cancels chunks not started;
// it does not wait for running ones (they run on copies, in other processes).

#include <simul/core/imap.hpp>
#include <simul/procpool/process_pool.hpp>

#include <cstddef>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul {

namespace detail {

/// The submitter of a pool that serializes its tasks (process, MPI): one
/// chunk is one message, through the pool's private `submit_chunk`.
template <class Pool, class Fn>
struct message_chunk_submitter {
  Pool* pool;
  Fn fn;
  /// Chunks run on copies in other processes: destroying a range does not wait.
  static constexpr bool waits_for_running = false;

  template <class Item>
  auto operator()(std::vector<Item>&& chunk) {
    return pool->submit_chunk(fn, chunk);
  }
};

/// The range of `Pool::imap` (Ordered) or `imap_unordered`, bounded by `max_inflight`.
template <bool Ordered, class Pool, class F, class R>
auto make_message_imap(Pool& pool, F&& fn, R&& items, const map_options& options, std::size_t max_inflight,
                       const char* who) {
  using submitter = message_chunk_submitter<Pool, std::decay_t<F>>;
  return imap_range<submitter, std::views::all_t<R>, Ordered>(submitter{&pool, std::decay_t<F>(std::forward<F>(fn))},
                                                              std::views::all(std::forward<R>(items)), options,
                                                              max_inflight, who);
}

} // namespace detail

template <class F, std::ranges::input_range R>
auto process_pool::map(F&& fn, R&& items, map_options options) {
  using Fn = std::decay_t<F>;
  static_assert(detail::check_task<Fn, std::ranges::range_value_t<R>>());
  static_assert(!std::is_void_v<std::invoke_result_t<Fn&, std::ranges::range_value_t<R>&>>,
                "simul::process_pool::map: the function must return a value");
  return detail::make_message_imap<true>(*this, std::forward<F>(fn), std::forward<R>(items), options,
                                         detail::eager_inflight(options), "process_pool::map")
      .to_vector();
}

template <class F, std::ranges::input_range R>
auto process_pool::imap(F&& fn, R&& items, imap_options options) {
  static_assert(detail::check_task<std::decay_t<F>, std::ranges::range_value_t<R>>());
  return detail::make_message_imap<true>(*this, std::forward<F>(fn), std::forward<R>(items), options,
                                         detail::lazy_inflight(options, workers()), "process_pool::imap");
}

template <class F, std::ranges::input_range R>
auto process_pool::imap_unordered(F&& fn, R&& items, imap_options options) {
  static_assert(detail::check_task<std::decay_t<F>, std::ranges::range_value_t<R>>());
  return detail::make_message_imap<false>(*this, std::forward<F>(fn), std::forward<R>(items), options,
                                          detail::lazy_inflight(options, workers()), "process_pool::imap_unordered");
}

} // namespace simul
