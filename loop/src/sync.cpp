// condition and barrier: the primitives that need coroutines of their own.

#include "loop_internal.hpp"

#include <simul/loop/sync.hpp>

namespace simul {

task<void> condition::wait() {
  if (!m_lock->locked()) {
    throw error("condition::wait: the lock is not held");
  }
  m_lock->release();
  std::exception_ptr failure;
  try {
    co_await detail::list_waiter(m_waiters, &condition::lost, this);
  } catch (...) {
    failure = std::current_exception();
  }
  // Re-take the lock whatever happened: the caller's code expects to hold it.
  while (true) {
    try {
      co_await m_lock->acquire();
      break;
    } catch (const cancelled_error&) {
      if (!failure) {
        failure = std::current_exception();
      }
    }
  }
  if (failure) {
    std::rethrow_exception(failure);
  }
}

void condition::notify(std::size_t n) {
  if (!m_lock->locked()) {
    throw error("condition::notify: the lock is not held");
  }
  for (std::size_t i = 0; i < n && m_waiters.signal_first(); ++i) {
  }
}

void condition::notify_all() {
  if (!m_lock->locked()) {
    throw error("condition::notify_all: the lock is not held");
  }
  m_waiters.signal_all();
}

task<std::size_t> barrier::wait() {
  if (m_broken) {
    throw broken_barrier_error();
  }
  const auto index = m_count++;
  const auto generation = m_generation;
  if (m_count == m_parties) {
    // The last to arrive releases everyone and starts a new round.
    m_count = 0;
    ++m_generation;
    m_waiters.signal_all();
    co_return index;
  }
  try {
    co_await detail::list_waiter(m_waiters);
  } catch (const cancelled_error&) {
    if (m_generation == generation && !m_broken) {
      --m_count; // left before the round completed
    }
    throw;
  }
  // Broken now, even if this task's round completed and it was only waiting
  // for its turn to run (asyncio's draining state raises too).
  if (m_broken || m_broken_generation == generation) {
    throw broken_barrier_error();
  }
  co_return index;
}

void barrier::abort() noexcept {
  m_broken = true;
  m_broken_generation = m_generation;
  m_count = 0; // everyone waiting now leaves with broken_barrier_error
  m_waiters.signal_all();
}

void barrier::reset() noexcept {
  if (m_count > 0) {
    m_broken_generation = m_generation;
    ++m_generation;
    m_waiters.signal_all();
  }
  m_count = 0;
  m_broken = false;
}

} // namespace simul
