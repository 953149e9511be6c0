// mpi_pool's members: the constructor's two paths (client on rank 0, server
// elsewhere) and the calls that go to the client.

#include <simul/mpipool/mpi_pool.hpp>

#include "client.hpp"
#include "runtime.hpp"
#include "worker.hpp"

namespace simul {

mpi_pool::mpi_pool(int& argc, char**& argv, mpi_pool_options options) : m_options(options) {
  open(&argc, &argv, options);
}

mpi_pool::mpi_pool(mpi_pool_options options) : m_options(options) { open(nullptr, nullptr, options); }

void mpi_pool::open(int* argc, char*** argv, const mpi_pool_options& options) {
  if (options.task_timeout.count() != 0 && !options.isolate) {
    throw error("mpi_pool: task_timeout needs isolate = true (a task is stopped by killing the local worker process "
                "that runs it; without isolate that process is the rank itself)");
  }
  auto& runtime = detail::mpi_runtime::get(argc, argv);
  m_rank = runtime.rank();
  m_size = runtime.size();
  if (m_rank != 0) {
    detail::serve(runtime); // never returns
  }
  if (m_size < 2) {
    throw error("mpi_pool: the job has one rank, so there is no worker; launch it with mpirun -n 2 or more");
  }
  if (!runtime.try_open_session()) {
    throw error("mpi_pool: another mpi_pool is open in this process (one at a time; shut it down first)");
  }
  try {
    m_client = std::make_unique<detail::mpi_client>(runtime, m_options);
  } catch (...) {
    runtime.close_session();
    throw;
  }
}

mpi_pool::~mpi_pool() = default;

int mpi_pool::rank() const noexcept { return m_rank; }
int mpi_pool::size() const noexcept { return m_size; }
std::size_t mpi_pool::workers() const noexcept { return static_cast<std::size_t>(m_size - 1); }
const std::string& mpi_pool::host(int r) const { return detail::mpi_runtime::get(nullptr, nullptr).host(r); }
mpi_clock_estimate mpi_pool::clock_estimate(int r) const {
  return detail::mpi_runtime::get(nullptr, nullptr).clock(r).estimate;
}

detail::out_message mpi_pool::payload_for(std::size_t size_hint) { return m_client->payload_for(size_hint); }
void mpi_pool::enqueue(detail::task_request&& request, detail::state_base& state) {
  m_client->enqueue(std::move(request), state);
}
void mpi_pool::shutdown(shutdown_options options) { m_client->shutdown(options.wait, options.cancel_pending); }
bool mpi_pool::is_shutdown() const noexcept { return m_client->is_shutdown(); }
mpi_pool_stats mpi_pool::stats() const { return m_client->stats(); }
const mpi_pool_options& mpi_pool::options() const noexcept { return m_options; }

} // namespace simul
