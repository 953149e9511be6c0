#pragma once

// The old name of the thread pool's lazy map results, kept for one release:
// `thread_pool::imap` now returns `simul::imap_range`, the one chunked-map
// engine of every pool (<simul/core/imap.hpp>).

#include <simul/core/imap.hpp>

#include <ranges>

namespace simul {

/// Deprecated: the type `thread_pool::imap` returns is `simul::imap_range`.
template <class Executor, class View, class Fn>
using map_results [[deprecated("use simul::imap_range (auto)")]] =
    imap_range<detail::chunk_submitter<Executor, Fn>, View, true>;

} // namespace simul
