#pragma once

// A worker rank's side of an mpi_pool (private to the module).

namespace simul::detail {

class mpi_runtime;

/// Serves pools from rank 0 until told to end: runs each task (in this
/// process, or with `isolate` in a local process_pool) and answers it. Ends
/// the process with status 0 (std::exit, which finalises MPI).
[[noreturn]] void serve(mpi_runtime& runtime);

} // namespace simul::detail
