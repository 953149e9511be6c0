// multi_wait: gather, wait and wait_for share one suspension over many tasks.

#include "loop_internal.hpp"

#include <simul/loop/detail/multi_wait.hpp>

namespace simul::detail {

multi_wait::multi_wait(std::vector<task_base*> children, mode m,
                       std::optional<std::chrono::steady_clock::time_point> deadline)
    : m_children(std::move(children)), m_deadline(deadline), m_mode(m) {}

multi_wait::~multi_wait() { detach(); }

void multi_wait::note_done(task_base& child) noexcept {
  ++m_done;
  if (m_first_failure == nullptr && (child.state() == task_base::status::failed || child.is_cancelled())) {
    m_first_failure = &child;
  }
}

bool multi_wait::satisfied() const noexcept {
  const bool all = m_done == m_children.size();
  switch (m_mode) {
  case mode::all_completed:
  case mode::gather_settled:
  case mode::wait_for:
    return all;
  case mode::first_completed:
    return all || m_done > 0;
  case mode::first_exception:
    return all || (m_first_failure != nullptr && m_first_failure->state() == task_base::status::failed);
  case mode::gather:
    return all || m_first_failure != nullptr;
  }
  return all;
}

// Only an empty list is ready here: the children are looked at once, in
// await_suspend (a gather of a million tasks touches each one time less).
bool multi_wait::await_ready() noexcept { return m_children.empty(); }

bool multi_wait::await_suspend(std::coroutine_handle<> h) {
  // One pass: count the children done already, link the others to us. Each
  // child's own embedded link when it is free (the common case: no array at
  // all); an array of links, by position, for the others.
  m_suspended = true; // from here detach() undoes the pass, even a partial one
  for (std::size_t i = 0; i < m_children.size(); ++i) {
    auto* child = m_children[i];
    if (child->done()) {
      note_done(*child);
      continue;
    }
    done_link* link = child->free_wait_link();
    if (link == nullptr) {
      if (m_links.empty()) {
        m_links.resize(m_children.size());
      }
      link = &m_links[i];
    }
    link->fn = &multi_wait::on_child_done;
    link->owner = this;
    child->add_done_link(*link);
  }
  // Satisfied already (a deadline already past still looks once at the
  // loop), or a cancellation is pending: go on without suspending.
  if (satisfied() || !suspend_on(h)) {
    detach();
    return false;
  }
  if (m_deadline) {
    m_timer.deadline = *m_deadline;
    m_timer.owner = this;
    m_timer.fire = &multi_wait::on_deadline;
    loop_add_timer(m_task->loop(), m_timer);
  }
  return true;
}

void multi_wait::on_child_done(done_link* link, task_base* child) noexcept {
  auto* self = static_cast<multi_wait*>(link->owner);
  self->note_done(*child);
  if (!self->m_woken && self->satisfied()) {
    self->m_woken = true;
    if (self->m_mode == mode::first_completed || self->m_mode == mode::first_exception ||
        self->m_mode == mode::all_completed) {
      // wait() resumes one iteration after the child finished, as asyncio's
      // does: a task finishing in that iteration is reported done too.
      self->wake_later();
    } else {
      self->wake();
    }
  }
}

void multi_wait::on_deadline(timer_entry* e) noexcept {
  auto* self = static_cast<multi_wait*>(e->owner);
  self->m_timed_out = true;
  if (self->m_woken) {
    return;
  }
  if (self->m_mode == mode::wait_for) {
    // asyncio: cancel the awaited task and wait for it to finish.
    for (auto* c : self->m_children) {
      c->cancel();
    }
    return;
  }
  self->m_woken = true;
  self->wake();
}

bool multi_wait::on_cancel() noexcept {
  if (m_woken) {
    return false;
  }
  switch (m_mode) {
  case mode::gather:
  case mode::gather_settled:
  case mode::wait_for: {
    bool accepted = false;
    for (auto* c : m_children) {
      if (c->cancel(m_task->cancel_message())) {
        accepted = true;
      }
    }
    if (accepted) {
      m_cancel_forwarded = true;
      return true; // the children's completion wakes us
    }
    return false;
  }
  default:
    m_woken = true;
    abort_and_wake();
    return true;
  }
}

void multi_wait::detach() noexcept {
  if (!m_suspended) {
    return;
  }
  m_suspended = false;
  // Every child counted done was unlinked by its completion (or never
  // linked): only a wait that ended early has links to take back.
  if (m_done < m_children.size()) {
    for (auto* child : m_children) {
      auto& link = child->m_wait_link;
      if (link.task != nullptr && link.owner == this) {
        child->remove_done_link(link);
      }
    }
    for (std::size_t i = 0; i < m_links.size(); ++i) {
      if (m_links[i].task != nullptr) {
        m_children[i]->remove_done_link(m_links[i]);
      }
    }
  }
  if (m_timer.armed()) {
    loop_remove_timer(m_task->loop(), m_timer);
  }
}

void multi_wait::await_resume() {
  detach();
  if (m_task != nullptr) {
    check_cancel();
  }
}

} // namespace simul::detail
