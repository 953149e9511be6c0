#pragma once

// simul::core: the task interface every simul module shares.
//
// `promise` / `future`, the `executor` concept and `inline_executor`, the
// `wait` / `as_completed` / `map` free functions, and the error types.
// Header-only; depends on nothing but the standard library and Linux.

#include <simul/core/error.hpp>
#include <simul/core/executor.hpp>
#include <simul/core/future.hpp>
#include <simul/core/map.hpp>
#include <simul/core/wait.hpp>
