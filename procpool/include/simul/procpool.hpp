#pragma once

// simul::procpool: a fork-based process pool that survives crashing workers.
// See <simul/procpool/process_pool.hpp> for the contract and docs/procpool.md
// for the guide.

#include <simul/core.hpp>
#include <simul/procpool/imap.hpp>
#include <simul/procpool/options.hpp>
#include <simul/procpool/process_pool.hpp>
#include <simul/procpool/shared_buffer.hpp>
