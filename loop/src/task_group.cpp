// task_group: structured concurrency with asyncio's cancellation bookkeeping.

#include "loop_internal.hpp"

#include <simul/loop/task_group.hpp>

namespace simul {

namespace {
std::string describe_all(const std::string& message, const std::vector<std::exception_ptr>& errors) {
  std::string text =
      message + " (" + std::to_string(errors.size()) + " sub-exception" + (errors.size() == 1 ? "" : "s") + ")";
  for (const auto& e : errors) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      text += "; ";
      text += ex.what();
    } catch (...) {
      text += "; unknown exception";
    }
  }
  return text;
}

bool is_cancellation(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const cancelled_error&) {
    return true;
  } catch (...) {
    return false;
  }
}
} // namespace

exception_group::exception_group(const std::string& message, std::vector<std::exception_ptr> errors)
    : error(describe_all(message, errors)), m_errors(std::move(errors)) {}

task_group::task_group() : m_parent(current_task()) {
  if (!m_parent.valid()) {
    throw error("task_group: must be created inside a task");
  }
  m_base_cancelling = m_parent.cancelling();
}

task_group::~task_group() {
  if (m_pending > 0) {
    auto& loop = m_parent.base().loop();
    if (loop.get_debug()) {
      detail::report(loop, "task_group destroyed without join(): its tasks were cancelled", nullptr,
                     m_parent.get_name());
    }
  }
  for (auto& c : m_children) {
    auto& b = c.handle.base();
    if (c.link.task != nullptr) {
      b.remove_done_link(c.link);
      b.cancel();
      // Nobody will look at these any more.
      b.add_done_callback([h = c.handle] { h.base().mark_retrieved(); });
    }
  }
}

void task_group::check_open() const {
  if (m_joined) {
    throw error("task_group: the group is finished (joined)");
  }
  if (m_aborting) {
    throw error("task_group: the group is shutting down (a task failed or it was cancelled)");
  }
}

void task_group::add(const basic_task_handle& h) {
  auto& c = m_children.emplace_back(child{this, h, {}});
  c.link.fn = &task_group::on_child_done;
  c.link.owner = &c;
  ++m_pending;
  if (h.base().done()) {
    // Finished inside create_task (an eager task): no completion will come,
    // so count it now, as asyncio's TaskGroup does.
    on_child_done(&c.link, &h.base());
    return;
  }
  h.base().add_done_link(c.link);
}

void task_group::abort() noexcept {
  m_aborting = true;
  for (auto& c : m_children) {
    if (!c.handle.base().done()) {
      c.handle.base().cancel();
    }
  }
}

void task_group::cancel() {
  if (m_joined) {
    return;
  }
  if (!m_aborting) {
    abort();
  }
  if (!m_joining && !m_parent_cancel_requested) {
    // Interrupt the body so that it reaches join(), which takes this request
    // back: the group ends without cancelled_error.
    m_parent_cancel_requested = true;
    m_parent.cancel("task_group: cancelled");
  }
}

void task_group::on_child_done(detail::done_link* link, detail::task_base* /*done*/) noexcept {
  auto& c = *static_cast<child*>(link->owner);
  auto* g = c.group;
  --g->m_pending;
  auto& b = c.handle.base();
  if (b.state() == detail::task_base::status::failed) {
    b.mark_retrieved();
    try {
      g->m_errors.push_back(b.error());
    } catch (...) {
    }
    if (!g->m_aborting) {
      g->abort();
      if (!g->m_joining && !g->m_parent_cancel_requested) {
        // Interrupt the body so that it reaches join().
        g->m_parent_cancel_requested = true;
        g->m_parent.cancel("task_group: a task failed");
      }
    }
  }
  if (g->m_pending == 0 && g->m_joiner != nullptr) {
    std::exchange(g->m_joiner, nullptr)->wake_up();
  }
}

void task_group::enter_join(std::exception_ptr body_error) {
  if (m_joining) {
    return;
  }
  if (m_joined) {
    throw error("task_group: join() was already awaited");
  }
  m_joining = true;
  if (body_error) {
    if (!m_aborting) {
      abort();
    }
    if (!is_cancellation(body_error)) {
      m_errors.push_back(body_error);
    }
  }
}

void task_group::finish_join() {
  m_joined = true;
  m_joiner = nullptr;
  if (m_parent_cancel_requested) {
    m_parent.uncancel();
  }
  // Whatever cancellation requests remain above the count the parent had
  // when the group was made came from outside the group.
  const bool outside = m_parent.cancelling() > m_base_cancelling;
  if (!m_errors.empty()) {
    if (outside) {
      // Keep the outside cancellation pending for the parent's next await.
      m_parent.uncancel();
      m_parent.cancel();
    }
    throw exception_group("unhandled errors in a task_group", std::move(m_errors));
  }
  if (outside) {
    // Delivered now: it must not also wait for the next await.
    m_parent.base().take_must_cancel();
    const auto& message = m_parent.base().cancel_message();
    throw cancelled_error(message.empty() ? std::string("the task owning the task_group was cancelled") : message);
  }
}

task_group::join_awaiter::~join_awaiter() {
  if (m_group->m_joiner == this) {
    m_group->m_joiner = nullptr;
  }
}

bool task_group::join_awaiter::await_ready() {
  if (!m_entered) {
    m_entered = true;
    m_group->enter_join(m_body_error);
  }
  return m_group->m_pending == 0;
}

bool task_group::join_awaiter::await_suspend(std::coroutine_handle<> h) {
  while (m_group->m_pending > 0) {
    if (suspend_on(h)) {
      m_group->m_joiner = this;
      return true;
    }
    // A cancellation was pending on entry: asyncio's __aexit__ catches it,
    // aborts the group and goes on waiting.
    m_task->take_must_cancel();
    if (!m_group->m_aborting) {
      m_group->abort();
    }
  }
  return false;
}

bool task_group::join_awaiter::on_cancel() noexcept {
  // Cancelled from outside while joining: cancel the tasks, keep waiting;
  // the request stays counted and propagates when the tasks are done.
  if (!m_group->m_aborting) {
    m_group->abort();
  }
  return true;
}

void task_group::join_awaiter::await_resume() { m_group->finish_join(); }

} // namespace simul
