#pragma once

// simul::threadpool: a work-stealing thread pool with the concurrent.futures
// surface (submit, post, map, imap, parallel_for, wait_idle, shutdown, stats),
// whose futures are the core `simul::future` and work with `simul::wait` and
// `simul::as_completed`. Links only simul::core and the C++ threads library.

#include <simul/core.hpp>
#include <simul/threadpool/map_results.hpp>
#include <simul/threadpool/thread_pool.hpp>
