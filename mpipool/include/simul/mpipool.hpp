#pragma once

// simul::mpipool: the process pool's interface over the ranks of an MPI job.
// See <simul/mpipool/mpi_pool.hpp> for the contract and docs/mpipool.md for
// the guide (launching, several hosts, errors, benchmarks).

#include <simul/core.hpp>
#include <simul/mpipool/errors.hpp>
#include <simul/mpipool/imap.hpp>
#include <simul/mpipool/mpi_pool.hpp>
#include <simul/mpipool/options.hpp>
