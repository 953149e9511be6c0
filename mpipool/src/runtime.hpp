#pragma once

// The MPI side of a process (private to the module): MPI's initialisation,
// the build check, the pool's communicator, and the end of MPI at exit.
//
// One per process, made by the first mpi_pool (on any rank) and kept until
// exit, so rank 0 may build one pool after another while the worker ranks
// wait between them. MPI is initialised with MPI_THREAD_SERIALIZED: rank 0's
// calls come from the constructing thread (the handshake) and then only from
// one pool's progress thread at a time, which is joined before the next pool
// or the end; a worker rank calls MPI from its main thread only.

#include <simul/mpipool/options.hpp>

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace simul::detail {

/// Throws simul::mpi_error naming `what` and MPI's own text if `rc` is not MPI_SUCCESS.
void check_mpi(int rc, const char* what);

/// Waits without busy polling: spins (yielding the CPU) for `spin` after the
/// last activity, then sleeps for a time that doubles up to `max_sleep`, and
/// up to 10 ms once nothing has happened for 50 ms.
class idle_backoff {
 public:
  explicit idle_backoff(std::chrono::microseconds max_sleep = std::chrono::microseconds(2000),
                        std::chrono::microseconds spin = std::chrono::microseconds(200)) noexcept
      : m_max(max_sleep), m_spin(spin) {}
  void reset() noexcept;
  /// Changes the longest sleep (from the next sleep on).
  void set_max_sleep(std::chrono::microseconds max_sleep) noexcept { m_max = max_sleep; }
  /// Changes how long to yield before the first sleep (0: sleep at once).
  void set_spin(std::chrono::microseconds spin) noexcept { m_spin = spin; }
  /// How long to sleep now (0: just yield) and counts one more idle round.
  std::chrono::microseconds next() noexcept;
  /// Sleeps (or yields) for `next()`.
  void pause() noexcept;

 private:
  std::chrono::microseconds m_max;
  std::chrono::microseconds m_spin;
  std::chrono::steady_clock::time_point m_idle_since{};
  std::chrono::microseconds m_sleep{0};
  bool m_idle = false;
};

/// Completes `request` without spinning on it (MPI_Test and `idle_backoff`).
void wait_quietly(MPI_Request& request, const char* what);

/// What rank 0 knows of a worker rank's clock (see mpi_clock_estimate).
struct rank_clock {
  mpi_clock_estimate estimate;
  std::int64_t trace_offset_ns = 0; ///< subtracted from the rank's times in traces (0 with same_clock)
  std::uint32_t trace_lane = 0;     ///< the rank's lane in simul::trace ("rank N @ host")
};

class mpi_runtime {
 public:
  /// The process's runtime: initialises MPI and checks the build on first
  /// call (collective: every rank must get here). Throws simul::mpi_error if
  /// MPI fails or a rank runs another build (then on every rank).
  static mpi_runtime& get(int* argc, char*** argv);

  [[nodiscard]] int rank() const noexcept { return m_rank; }
  [[nodiscard]] int size() const noexcept { return m_size; }
  [[nodiscard]] MPI_Comm comm() const noexcept { return m_comm; }
  /// The host rank `r` runs on (rank 0 knows every rank's; a worker its own).
  [[nodiscard]] const std::string& host(int r) const;
  [[nodiscard]] const std::string& own_host() const noexcept { return m_own_host; }
  /// Rank 0: worker rank `r`'s clock (throws std::out_of_range for another r).
  [[nodiscard]] const rank_clock& clock(int r) const;

  /// Rank 0: whether the worker ranks are waiting for another pool (and must
  /// be told to leave at exit).
  void set_workers_parked(bool parked) noexcept { m_parked = parked; }
  /// A worker rank: MPI is finalised at exit even if the program initialised
  /// it, since the program's own code after the pool never runs there.
  void finalize_at_exit() noexcept { m_finalize = true; }
  /// Rank 0: a pool is open (only one at a time).
  bool try_open_session() noexcept;
  void close_session() noexcept;

  ~mpi_runtime();
  mpi_runtime(const mpi_runtime&) = delete;
  mpi_runtime& operator=(const mpi_runtime&) = delete;

 private:
  mpi_runtime() = default;
  void start(int* argc, char*** argv);
  void handshake();
  /// Collective: rank 0 pings each worker rank to estimate its clock.
  void estimate_clocks(const std::vector<std::string>& boot_ids);
  [[nodiscard]] rank_clock ping(int r, bool same_clock) const;

  int m_rank = 0;
  int m_size = 1;
  MPI_Comm m_comm = MPI_COMM_NULL;
  bool m_we_initialised = false;
  bool m_finalize = false; ///< finalise at exit even if the program initialised MPI
  bool m_parked = false;
  bool m_session_open = false;
  std::string m_own_host;
  std::vector<std::string> m_hosts;
  std::vector<rank_clock> m_clocks; ///< rank 0: index r
};

/// For the tests: the build id this process claims in the handshake (empty:
/// its real one). Set before the first pool.
void fake_build_id_for_tests(const std::string& id);
/// For the tests: the kernel boot id this process claims in the handshake
/// (empty: its real one), so that it stands for a rank on another host.
void fake_boot_id_for_tests(const std::string& id);

} // namespace simul::detail
