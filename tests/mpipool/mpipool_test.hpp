#pragma once

// Shared by the MPI tests (rank 0 only runs them).

namespace simul_test {
/// The number of ranks the job was launched with.
inline int job_size = 0;
} // namespace simul_test
