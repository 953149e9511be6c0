#pragma once

// simul::map: apply a function to every item of a range on an executor, and
// collect the results in input order (concurrent.futures' Executor.map).
//
//   std::vector<int> squares = simul::map(pool, [](int x) { return x * x; }, numbers, {.chunksize = 64});
//
// An executor with a `map` of its own (the process pool ships chunks to its
// workers in one message) is asked to do it; any other executor gets one
// `submit` per chunk of `chunksize` items, all at once unless `max_inflight`
// bounds them (the engine is `simul::imap_range`, core/imap.hpp). The first
// exception, in input order, is rethrown after the work not yet started has
// been cancelled; past `timeout` the same happens with `timeout_error`.
//
// `simul::map(ex, f, r1, r2, ...)` zips several ranges (up to the shortest)
// and calls `f(a, b, ...)`, as `Executor.map(f, r1, r2)`; options then come
// before the ranges: `simul::map(ex, f, {.chunksize = 8}, r1, r2)`.
//
// Thread-safety: call from any thread; `f` runs wherever the executor runs it.
// Lifetime: items are copied into the tasks; `f` is copied once per chunk.

#include <simul/core/error.hpp>
#include <simul/core/executor.hpp>
#include <simul/core/future.hpp>
#include <simul/core/imap.hpp>
#include <simul/core/wait.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul {

namespace detail {
template <class E, class F, class R>
concept has_own_map = requires(E& ex, F& f, R& range, map_options options) {
  ex.map(f, range, options);
};
} // namespace detail

/// Runs `f(item)` for every item on `ex` and returns the results in input order.
template <class E, class F, std::ranges::input_range R>
requires(std::invocable<std::decay_t<F>&, std::ranges::range_reference_t<R>>) auto map(E& ex, F&& f, R&& items,
                                                                                       map_options options = {}) {
  if constexpr (detail::has_own_map<E, F, R>) {
    return ex.map(f, items, options);
  } else {
    using fn_t = std::decay_t<F>;
    using view_t = std::views::all_t<R>;
    using result_t = std::invoke_result_t<fn_t&, std::ranges::range_value_t<R>&>;
    static_assert(!std::is_void_v<result_t>, "simul::map: the function must return a value");
    return imap_range<detail::chunk_submitter<E, fn_t>, view_t>(detail::chunk_submitter<E, fn_t>{&ex, fn_t(f)},
                                                                std::views::all(std::forward<R>(items)), options,
                                                                detail::eager_inflight(options), "simul::map")
        .to_vector();
  }
}

namespace detail {
/// The items of several ranges, zipped into tuples up to the shortest one.
template <class... R>
auto zip_items(R&&... ranges) {
  std::vector<std::tuple<std::ranges::range_value_t<R>...>> out;
  auto its = std::make_tuple(std::ranges::begin(ranges)...);
  const auto ends = std::make_tuple(std::ranges::end(ranges)...);
  auto any_at_end = [&]<std::size_t... I>(std::index_sequence<I...>) {
    return ((std::get<I>(its) == std::get<I>(ends)) || ...);
  };
  auto advance_all = [&]<std::size_t... I>(std::index_sequence<I...>) { (++std::get<I>(its), ...); };
  auto take_all = [&]<std::size_t... I>(std::index_sequence<I...>) { out.emplace_back(*std::get<I>(its)...); };
  constexpr auto seq = std::index_sequence_for<R...>{};
  while (!any_at_end(seq)) {
    take_all(seq);
    advance_all(seq);
  }
  return out;
}
} // namespace detail

/// Runs `f(a, b, ...)` for the items of several ranges taken together, as
/// Python's `Executor.map(f, r1, r2, ...)`: up to the shortest range, results
/// in input order. The items are copied into tuples first; the rest is the
/// one-range `map` (same errors, chunks and timeout).
template <class E, class F, std::ranges::input_range R1, std::ranges::input_range R2, std::ranges::input_range... Rs>
requires(std::invocable<std::decay_t<F>&, std::ranges::range_value_t<R1>&, std::ranges::range_value_t<R2>&,
                        std::ranges::range_value_t<Rs>&...>) auto map(E& ex, F&& f, map_options options, R1&& r1,
                                                                      R2&& r2, Rs&&... rs) {
  auto zipped = detail::zip_items(std::forward<R1>(r1), std::forward<R2>(r2), std::forward<Rs>(rs)...);
  return simul::map(
      ex, [fn = std::decay_t<F>(std::forward<F>(f))](auto& items) mutable { return std::apply(fn, items); }, zipped,
      options);
}

/// The same with the default options: `simul::map(ex, f, r1, r2, ...)`.
template <class E, class F, std::ranges::input_range R1, std::ranges::input_range R2, std::ranges::input_range... Rs>
requires(std::invocable<std::decay_t<F>&, std::ranges::range_value_t<R1>&, std::ranges::range_value_t<R2>&,
                        std::ranges::range_value_t<Rs>&...>) auto map(E& ex, F&& f, R1&& r1, R2&& r2, Rs&&... rs) {
  return simul::map(ex, std::forward<F>(f), map_options{}, std::forward<R1>(r1), std::forward<R2>(r2),
                    std::forward<Rs>(rs)...);
}

} // namespace simul
