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

#include <simul/mpipool/mpi_pool.hpp>
#include <simul/procpool/imap.hpp>

#include <ranges>
#include <type_traits>
#include <utility>

namespace simul {

// The range is the process pool's own (<simul/procpool/imap.hpp>): one engine
// for both pools, sending each chunk through the pool's `submit_chunk`.

template <class F, std::ranges::input_range R>
auto mpi_pool::imap(F&& fn, R&& items, imap_options options) {
  using Fn = std::decay_t<F>;
  static_assert(detail::check_mpi_task<Fn, std::ranges::range_value_t<R>>());
  return imap_range<mpi_pool, Fn, std::views::all_t<R>, true>(*this, Fn(fn), std::views::all(std::forward<R>(items)),
                                                              options, workers());
}

template <class F, std::ranges::input_range R>
auto mpi_pool::imap_unordered(F&& fn, R&& items, imap_options options) {
  using Fn = std::decay_t<F>;
  static_assert(detail::check_mpi_task<Fn, std::ranges::range_value_t<R>>());
  return imap_range<mpi_pool, Fn, std::views::all_t<R>, false>(*this, Fn(fn), std::views::all(std::forward<R>(items)),
                                                               options, workers());
}

} // namespace simul
