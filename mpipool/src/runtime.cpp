// MPI's initialisation, the build check and MPI's end (see runtime.hpp).

#include "runtime.hpp"

#include "messages.hpp"

#include <simul/mpipool/errors.hpp>
#include <simul/procpool/detail/code_address.hpp>
#include <simul/trace/detail/recorder.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace simul::detail {
namespace {

std::string& fake_build_id() {
  static std::string id;
  return id;
}

std::string& fake_boot_id() {
  static std::string id;
  return id;
}

// What each rank tells rank 0 in the handshake.
struct identity {
  char build[128];
  char host[64];
  char boot[40]; ///< the kernel's boot id: the same one means the same CLOCK_MONOTONIC
  std::int32_t pid;
};

std::string this_boot_id() {
  std::FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r");
  if (f == nullptr) {
    return {};
  }
  char id[40] = {};
  const bool ok = std::fgets(id, sizeof id, f) != nullptr;
  std::fclose(f);
  std::string out = ok ? id : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
    out.pop_back();
  }
  return out;
}

constexpr int k_clock_pings = 8;

template <std::size_t N>
void copy_text(char (&to)[N], const std::string& from) {
  std::memset(to, 0, N);
  std::memcpy(to, from.data(), std::min(from.size(), N - 1));
}

std::string this_host() {
  char name[64] = {};
  if (::gethostname(name, sizeof name - 1) != 0) {
    return "unknown";
  }
  return name;
}

} // namespace

void fake_build_id_for_tests(const std::string& id) { fake_build_id() = id; }
void fake_boot_id_for_tests(const std::string& id) { fake_boot_id() = id; }

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) {
    return;
  }
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw mpi_error(std::string("mpi_pool: ") + what + " failed: " + std::string(text, static_cast<std::size_t>(length)));
}

void idle_backoff::reset() noexcept {
  m_idle = false;
  m_sleep = std::chrono::microseconds(0);
}

std::chrono::microseconds idle_backoff::next() noexcept {
  using namespace std::chrono;
  const auto now = steady_clock::now();
  if (!m_idle) {
    m_idle = true;
    m_idle_since = now;
  }
  // Yield for the first moments of idleness: a caller that submits one task
  // at a time then finds its peer awake. Past that, sleep longer and longer.
  if (now - m_idle_since < m_spin) {
    return microseconds(0);
  }
  // After 50 ms without anything, the pool is idle rather than between two
  // tasks: sleep up to 10 ms (about 100 looks a second, well under 1% CPU).
  const auto cap = now - m_idle_since > milliseconds(50) ? std::max(m_max, microseconds(10'000)) : m_max;
  m_sleep = m_sleep.count() == 0 ? std::min(cap, microseconds(20)) : std::min(cap, m_sleep * 2);
  return m_sleep;
}

void idle_backoff::pause() noexcept {
  const auto pause_for = next();
  if (pause_for.count() == 0) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(pause_for);
  }
}

void wait_quietly(MPI_Request& request, const char* what) {
  idle_backoff backoff(std::chrono::microseconds(5000));
  for (;;) {
    int done = 0;
    check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
    if (done != 0) {
      return;
    }
    backoff.pause();
  }
}

mpi_runtime& mpi_runtime::get(int* argc, char*** argv) {
  static std::mutex lock;
  static mpi_runtime runtime;
  static bool started = false;
  static std::string failure;
  std::lock_guard guard(lock);
  if (!failure.empty()) {
    throw mpi_error(failure);
  }
  if (!started) {
    try {
      runtime.start(argc, argv);
    } catch (const std::exception& e) {
      failure = e.what();
      throw;
    }
    started = true;
  }
  return runtime;
}

void mpi_runtime::start(int* argc, char*** argv) {
  int initialised = 0;
  check_mpi(MPI_Initialized(&initialised), "MPI_Initialized");
  int provided = 0;
  if (initialised == 0) {
    check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
    m_we_initialised = true;
  } else {
    check_mpi(MPI_Query_thread(&provided), "MPI_Query_thread");
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    throw mpi_error("mpi_pool: the MPI library gives no MPI_THREAD_SERIALIZED support (rank 0 calls MPI from its "
                    "progress thread)");
  }
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &m_comm), "MPI_Comm_dup");
  check_mpi(MPI_Comm_set_errhandler(m_comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(m_comm, &m_rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(m_comm, &m_size), "MPI_Comm_size");
  m_own_host = this_host();
  handshake();
}

void mpi_runtime::handshake() {
  identity mine{};
  copy_text(mine.build, fake_build_id().empty() ? executable_build_id() : fake_build_id());
  copy_text(mine.host, m_own_host);
  copy_text(mine.boot, fake_boot_id().empty() ? this_boot_id() : fake_boot_id());
  mine.pid = static_cast<std::int32_t>(::getpid());
  std::vector<identity> all(m_rank == 0 ? static_cast<std::size_t>(m_size) : 0);
  // Non-blocking and waited for quietly: the worker ranks may wait here long
  // (rank 0 runs its own code before its pool), and must not spin meanwhile.
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Igather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, 0, m_comm, &request),
            "the handshake (MPI_Igather)");
  wait_quietly(request, "the handshake (MPI_Igather)");
  std::int32_t verdict = -1; // the first rank that runs another build, or -1
  std::string message;
  if (m_rank == 0) {
    for (int r = 0; r < m_size; ++r) {
      m_hosts.emplace_back(all[static_cast<std::size_t>(r)].host);
    }
    for (int r = 1; r < m_size && verdict < 0; ++r) {
      if (std::strncmp(all[static_cast<std::size_t>(r)].build, mine.build, sizeof mine.build) != 0) {
        verdict = r;
        message = "mpi_pool: rank " + std::to_string(r) + " (host " + m_hosts[static_cast<std::size_t>(r)] + ", pid " +
                  std::to_string(all[static_cast<std::size_t>(r)].pid) +
                  ") runs another build of the "
                  "program than rank 0: " +
                  all[static_cast<std::size_t>(r)].build + " there, " + mine.build +
                  " here. Every rank must run the same executable (copy it to every host).";
      }
    }
  }
  check_mpi(MPI_Ibcast(&verdict, 1, MPI_INT32_T, 0, m_comm, &request), "the handshake (MPI_Ibcast)");
  wait_quietly(request, "the handshake (MPI_Ibcast)");
  if (verdict >= 0) {
    if (m_rank != 0) {
      message = "mpi_pool: rank 0 found that rank " + std::to_string(verdict) +
                " runs another build of the program; no pool on rank " + std::to_string(m_rank);
    }
    throw mpi_error(message);
  }
  std::vector<std::string> boots;
  for (const auto& who : all) {
    boots.emplace_back(who.boot);
  }
  std::vector<int> pids;
  for (const auto& who : all) {
    pids.push_back(who.pid);
  }
  estimate_clocks(boots);
  for (int r = 1; r < m_size && m_rank == 0; ++r) {
    const auto name = "rank " + std::to_string(r) + " @ " + m_hosts[static_cast<std::size_t>(r)];
    m_clocks[static_cast<std::size_t>(r)].trace_lane = trace_remote_lane(pids[static_cast<std::size_t>(r)], name);
  }
}

void mpi_runtime::estimate_clocks(const std::vector<std::string>& boot_ids) {
  if (m_rank != 0) {
    // Answer rank 0's pings with this rank's time, waiting quietly for each.
    for (int k = 0; k < k_clock_pings; ++k) {
      std::int64_t ping = 0;
      MPI_Request request = MPI_REQUEST_NULL;
      check_mpi(MPI_Irecv(&ping, 1, MPI_INT64_T, 0, k_clock_tag, m_comm, &request), "a clock ping (MPI_Irecv)");
      wait_quietly(request, "a clock ping (MPI_Irecv)");
      const std::int64_t now = trace_now();
      check_mpi(MPI_Send(&now, 1, MPI_INT64_T, 0, k_clock_tag, m_comm), "a clock ping (MPI_Send)");
    }
    return;
  }
  m_clocks.assign(static_cast<std::size_t>(m_size), rank_clock{});
  for (int r = 1; r < m_size; ++r) {
    const auto& boot = boot_ids[static_cast<std::size_t>(r)];
    m_clocks[static_cast<std::size_t>(r)] = ping(r, !boot.empty() && boot == boot_ids[0]);
  }
}

rank_clock mpi_runtime::ping(int r, bool same_clock) const {
  // The exchange with the shortest round trip bounds the error best: their
  // time lies between our t0 and t1, so offset = theirs - (t0 + t1) / 2 is
  // wrong by at most half the round trip.
  rank_clock best;
  best.estimate.round_trip = std::chrono::nanoseconds::max();
  for (int k = 0; k < k_clock_pings; ++k) {
    std::int64_t theirs = 0;
    const std::int64_t t0 = trace_now();
    check_mpi(MPI_Send(&t0, 1, MPI_INT64_T, r, k_clock_tag, m_comm), "a clock ping (MPI_Send)");
    check_mpi(MPI_Recv(&theirs, 1, MPI_INT64_T, r, k_clock_tag, m_comm, MPI_STATUS_IGNORE), "a clock ping (MPI_Recv)");
    const std::int64_t t1 = trace_now();
    if (std::chrono::nanoseconds(t1 - t0) < best.estimate.round_trip) {
      best.estimate.round_trip = std::chrono::nanoseconds(t1 - t0);
      best.estimate.offset = std::chrono::nanoseconds(theirs - (t0 + (t1 - t0) / 2));
    }
  }
  best.estimate.same_clock = same_clock;
  best.trace_offset_ns = same_clock ? 0 : best.estimate.offset.count();
  return best;
}

const rank_clock& mpi_runtime::clock(int r) const {
  if (r < 1 || static_cast<std::size_t>(r) >= m_clocks.size()) {
    throw std::out_of_range("mpi_pool: no worker rank " + std::to_string(r) + " (1 <= r < " + std::to_string(m_size) +
                            ")");
  }
  return m_clocks[static_cast<std::size_t>(r)];
}

const std::string& mpi_runtime::host(int r) const {
  if (r == m_rank) {
    return m_own_host;
  }
  return m_hosts.at(static_cast<std::size_t>(r));
}

bool mpi_runtime::try_open_session() noexcept {
  if (m_session_open) {
    return false;
  }
  m_session_open = true;
  return true;
}

void mpi_runtime::close_session() noexcept { m_session_open = false; }

mpi_runtime::~mpi_runtime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (m_comm == MPI_COMM_NULL || finalized != 0) {
    return; // never started, or the program ended MPI itself
  }
  if (m_rank == 0 && m_parked) {
    // The worker ranks wait for another pool that will never come: tell them to leave.
    mpi_header header;
    header.kind = mpi_kind::close;
    header.fn = 1;
    for (int r = 1; r < m_size; ++r) {
      MPI_Send(&header, sizeof header, MPI_BYTE, r, k_tag, m_comm);
    }
  }
  MPI_Comm_free(&m_comm);
  if (m_we_initialised || m_finalize) {
    MPI_Finalize();
  }
}

} // namespace simul::detail
