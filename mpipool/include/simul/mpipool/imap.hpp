#pragma once

// mpi_pool::map, imap and imap_unordered: chunked maps, lazy ones with bounded work in flight,
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

#include <simul/mpipool/mpi_pool.hpp>
#include <simul/procpool/imap.hpp>

#include <ranges>
#include <type_traits>
#include <utility>

namespace simul {

// The engine is core's `imap_range` with the process pool's submitter
// (<simul/procpool/imap.hpp>): each chunk goes to a worker rank as one
// message, through the pool's `submit_chunk`.

template <class F, std::ranges::input_range R>
auto mpi_pool::map(F&& fn, R&& items, map_options options) {
  using Fn = std::decay_t<F>;
  static_assert(detail::check_mpi_task<Fn, std::ranges::range_value_t<R>>());
  static_assert(!std::is_void_v<std::invoke_result_t<Fn&, std::ranges::range_value_t<R>&>>,
                "simul::mpi_pool::map: the function must return a value");
  return detail::make_message_imap<true>(*this, std::forward<F>(fn), std::forward<R>(items), options,
                                         detail::eager_inflight(options), "mpi_pool::map")
      .to_vector();
}

template <class F, std::ranges::input_range R>
auto mpi_pool::imap(F&& fn, R&& items, imap_options options) {
  static_assert(detail::check_mpi_task<std::decay_t<F>, std::ranges::range_value_t<R>>());
  return detail::make_message_imap<true>(*this, std::forward<F>(fn), std::forward<R>(items), options,
                                         detail::lazy_inflight(options, workers()), "mpi_pool::imap");
}

template <class F, std::ranges::input_range R>
auto mpi_pool::imap_unordered(F&& fn, R&& items, imap_options options) {
  static_assert(detail::check_mpi_task<std::decay_t<F>, std::ranges::range_value_t<R>>());
  return detail::make_message_imap<false>(*this, std::forward<F>(fn), std::forward<R>(items), options,
                                          detail::lazy_inflight(options, workers()), "mpi_pool::imap_unordered");
}

} // namespace simul
