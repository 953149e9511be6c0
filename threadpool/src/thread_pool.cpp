#include "scheduler.hpp"

#include <simul/threadpool/thread_pool.hpp>

#include <cstdio>
#include <cstdlib>

namespace simul {

thread_pool::thread_pool(thread_pool_options options)
    : m_core(std::make_unique<detail::scheduler>(std::move(options))) {
  m_core->start();
}

thread_pool::~thread_pool() {
  if (m_core->on_worker_thread()) {
    std::fprintf(stderr, "simul::thread_pool '%s' destroyed by one of its own tasks; aborting\n",
                 m_core->name().c_str());
    std::abort();
  }
  m_core->shutdown({.wait = true, .cancel_pending = false});
}

void thread_pool::enqueue(detail::pool_task&& task) { m_core->enqueue(std::move(task)); }

void thread_pool::wait_idle() { m_core->wait_idle(); }

void thread_pool::shutdown(shutdown_options options) { m_core->shutdown(options); }

bool thread_pool::is_shutdown() const noexcept { return m_core->is_shutdown(); }

void thread_pool::set_exception_handler(std::function<void(std::exception_ptr)> handler) {
  m_core->set_exception_handler(std::move(handler));
}

thread_pool_stats thread_pool::stats() const { return m_core->stats(); }

std::size_t thread_pool::workers() const noexcept { return m_core->workers(); }

const std::string& thread_pool::name() const noexcept { return m_core->name(); }

bool thread_pool::on_worker_thread() const noexcept { return m_core->on_worker_thread(); }

} // namespace simul
