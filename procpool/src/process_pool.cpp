// process_pool's non-template members: a thin face over its I/O loop and
// task queue (io_loop.hpp, task_queue.hpp).

#include "io_loop.hpp"

#include <simul/procpool/process_pool.hpp>

namespace simul {

process_pool::process_pool(process_pool_options options)
    : m_loop(std::make_unique<detail::procpool::io_loop>(options)) {}

process_pool::~process_pool() = default;

detail::code_naming process_pool::code_naming() const noexcept {
  return m_loop->options().start == start_method::exec ? detail::code_naming::executable
                                                       : detail::code_naming::anchored;
}

void process_pool::enqueue(detail::task_request&& request) { m_loop->queue().push(std::move(request)); }

void process_pool::shutdown(shutdown_options options) { m_loop->shutdown(options); }

bool process_pool::is_shutdown() const noexcept { return m_loop->queue().is_shutdown(); }

std::size_t process_pool::workers() const noexcept { return m_loop->options().workers; }

std::size_t process_pool::worker_count() const noexcept { return workers(); }

process_pool_stats process_pool::stats() const { return m_loop->queue().stats(); }

std::vector<int> process_pool::worker_pids() const { return m_loop->queue().pids(); }

int process_pool::zygote_pid() const noexcept { return m_loop->zygote_pid(); }

const process_pool_options& process_pool::options() const noexcept { return m_loop->options(); }

} // namespace simul
