// process_pool's non-template members: a thin face over process_pool_core.

#include "pool_core.hpp"

#include <simul/procpool/process_pool.hpp>

namespace simul {

process_pool::process_pool(process_pool_options options)
    : m_core(std::make_unique<detail::process_pool_core>(options)) {}

process_pool::~process_pool() = default;

void process_pool::enqueue(detail::task_request&& request) { m_core->enqueue(std::move(request)); }

void process_pool::shutdown(shutdown_options options) { m_core->shutdown(options); }

bool process_pool::is_shutdown() const noexcept { return m_core->is_shutdown(); }

std::size_t process_pool::workers() const noexcept { return m_core->options().workers; }

std::size_t process_pool::worker_count() const noexcept { return workers(); }

process_pool_stats process_pool::stats() const { return m_core->stats(); }

std::vector<int> process_pool::worker_pids() const { return m_core->worker_pids(); }

int process_pool::zygote_pid() const noexcept { return m_core->zygote_pid(); }

const process_pool_options& process_pool::options() const noexcept { return m_core->options(); }

} // namespace simul
