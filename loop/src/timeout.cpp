// timeout_scope: a deadline that cancels the task, turned into timeout_error.

#include "loop_internal.hpp"

#include <simul/loop/timeout.hpp>

namespace simul {

void timeout_scope::enter() {
  if (m_state != state::created) {
    throw error("timeout: a scope runs one body only");
  }
  m_task = current_task();
  if (!m_task.valid()) {
    throw error("timeout: must be awaited inside a task");
  }
  m_state = state::entered;
  m_cancelling = m_task.cancelling();
  arm();
}

void timeout_scope::arm() {
  m_timer.cancel();
  m_timer = handle();
  if (!m_when) {
    return;
  }
  auto& loop = m_task.base().loop();
  if (*m_when <= loop.time()) {
    m_timer = loop.call_soon([this] { on_deadline(); });
  } else {
    m_timer = loop.call_at(*m_when, [this] { on_deadline(); });
  }
}

void timeout_scope::on_deadline() {
  if (m_state != state::entered) {
    return;
  }
  m_state = state::expiring;
  m_task.cancel("timeout: the deadline passed");
}

void timeout_scope::reschedule(std::optional<time_point> when) {
  if (m_state == state::expiring || m_state == state::expired || m_state == state::exited) {
    throw error("timeout: cannot reschedule a scope that expired or exited");
  }
  m_when = when;
  if (m_state == state::entered) {
    arm();
  }
}

void timeout_scope::leave(std::exception_ptr error_ptr) {
  m_timer.cancel();
  m_timer = handle();
  if (m_state == state::expiring) {
    m_state = state::expired;
    const bool ours = m_task.uncancel() <= m_cancelling;
    if (ours && error_ptr) {
      try {
        std::rethrow_exception(error_ptr);
      } catch (const cancelled_error&) {
        m_task = basic_task_handle();
        throw timeout_error("timeout: the deadline passed");
      } catch (...) {
      }
    }
  } else {
    m_state = state::exited;
  }
  m_task = basic_task_handle();
  if (error_ptr) {
    std::rethrow_exception(error_ptr);
  }
}

} // namespace simul
