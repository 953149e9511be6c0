#pragma once

// Everything simul has: include the module headers that were built.

#include <simul/core.hpp>

#if __has_include(<simul/threadpool.hpp>)
#include <simul/threadpool.hpp>
#endif
#if __has_include(<simul/procpool.hpp>)
#include <simul/procpool.hpp>
#endif
#if __has_include(<simul/loop.hpp>)
#include <simul/loop.hpp>
#endif
#if __has_include(<simul/mpipool.hpp>)
#include <simul/mpipool.hpp>
#endif
#if __has_include(<simul/http.hpp>)
#include <simul/http.hpp>
#endif
#if __has_include(<simul/trace.hpp>)
#include <simul/trace.hpp>
#endif
