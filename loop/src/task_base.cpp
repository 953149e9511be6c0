// Tasks and waiters: stepping, completion, cancellation.

#include "loop_internal.hpp"
#include "trace_hooks.hpp"

#include <simul/loop/task.hpp>
#include <simul/loop/task_handle.hpp>

#include <string>

namespace simul::detail {

namespace {
thread_local task_base* t_current = nullptr;

struct user_link : done_link {
  unique_function<void()> callback;
  event_loop* loop = nullptr;
};
} // namespace

task_base* current_task_or_null() noexcept { return t_current; }

// ---- a future's on_ready callback that threw ----

namespace {
// On a loop's thread, the loop's exception handler hears of it, as asyncio
// logs an exception from a done callback; elsewhere, stderr.
void report_to_running_loop(std::exception_ptr error) noexcept {
  if (auto* loop = running_loop_or_null()) {
    report(*loop, "a future's on_ready callback threw", std::move(error));
    return;
  }
  print_callback_error(error);
}
[[maybe_unused]] const bool g_sink_installed = [] {
  g_callback_error_sink.store(&report_to_running_loop, std::memory_order_release);
  return true;
}();
} // namespace

// ---- waiter ----

bool waiter::suspend_on(std::coroutine_handle<> h) {
  auto* t = t_current;
  if (t == nullptr) {
    throw error("simul: a loop awaitable was awaited outside a task (run the coroutine with simul::run, "
                "run_until_complete or create_task)");
  }
  m_task = t;
  m_aborted = false;
  if (t->m_must_cancel) {
    return false;
  }
  t->m_resume = h;
  t->m_waiter = this;
  trace_task_waits(*t, *this);
  return true;
}

void waiter::wake() noexcept {
  auto* t = m_task;
  if (t->m_waiter == this) {
    t->m_waiter = nullptr;
  }
  schedule(impl_of(*t->m_loop), ready_item{&task_base::step_thunk, t});
}

void waiter::wake_later() noexcept {
  auto* t = m_task;
  if (t->m_waiter == this) {
    t->m_waiter = nullptr;
  }
  schedule(impl_of(*t->m_loop), ready_item{&task_base::reschedule_thunk, t});
}

void task_base::reschedule_thunk(void* self) noexcept {
  auto* t = static_cast<task_base*>(self);
  if (!t->done()) {
    schedule(impl_of(*t->m_loop), ready_item{&task_base::step_thunk, t});
  }
}

void waiter::check_cancel() {
  auto* t = m_task;
  if (m_aborted || t->m_must_cancel) {
    m_aborted = false;
    t->m_must_cancel = false;
    t->throw_if_must_cancel();
  }
}

// ---- yield_now ----

// No waiter is registered: the step is queued at once, so there is nothing
// to stop; a cancellation meanwhile is pending and thrown at resumption.
bool yield_suspend(std::coroutine_handle<> h) {
  auto* t = t_current;
  if (t == nullptr) {
    throw error("simul: a loop awaitable was awaited outside a task (run the coroutine with simul::run, "
                "run_until_complete or create_task)");
  }
  if (t->m_must_cancel) {
    return false;
  }
  schedule(impl_of(*t->m_loop), ready_item{&task_base::step_thunk, t});
  t->m_resume = h;
  return true;
}

void yield_resume() {
  auto* t = t_current; // a task resumes inside its own step
  if (t != nullptr && t->m_must_cancel) {
    t->m_must_cancel = false;
    t->throw_if_must_cancel();
  }
}

// ---- task_base ----

task_base::task_base(event_loop& loop) : m_loop(&loop), m_id(impl_of(loop).next_task_id++) {}

task_base::~task_base() = default;

void task_base::start(std::coroutine_handle<> root, bool eager) {
  if (!eager) {
    loop_schedule(*m_loop, ready_item{&task_base::step_thunk, this}); // the only step that may throw
  }
  m_resume = root;
  // The loop's reference, dropped when the task completes. Nobody else holds
  // one yet, so a plain store does.
  m_refs.store(2, std::memory_order_relaxed);
  loop_access::link(impl_of(*m_loop), *this);
  trace_task_created(*this);
}

void task_base::throw_if_must_cancel() {
  const auto& message = cancel_message();
  throw cancelled_error(message.empty() ? std::string("task was cancelled") : message);
}

std::string task_base::name() const {
  if (m_extras && !m_extras->name.empty()) {
    return m_extras->name;
  }
  return "Task-" + std::to_string(m_id);
}

bool task_base::cancel(const std::string& message) {
  if (done()) {
    return false;
  }
  ++m_cancel_requests;
  if (!message.empty() || m_extras) {
    extras().cancel_message = message;
  }
  if (m_waiter != nullptr && m_waiter->on_cancel()) {
    return true;
  }
  m_must_cancel = true;
  return true;
}

void task_base::step() noexcept {
  if (done()) {
    return;
  }
  if (!m_started) {
    m_started = true;
    m_status = status::running;
    trace_task_named(*this);
    if (m_must_cancel) {
      cancel_first_step();
      return;
    }
  }
  auto* previous = t_current;
  t_current = this;
  const trace_step_scope trace_slice(*this);
  // The step may finish the task and free it: nothing touches `this` after.
  m_resume.resume();
  t_current = previous;
}

// Out of line, so that step() (every yield, every wake-up) stays short.
[[gnu::noinline]] void task_base::cancel_first_step() noexcept {
  // Cancelled before its first step: the body never runs.
  auto* previous = t_current;
  t_current = this;
  m_must_cancel = false;
  destroy_frame();
  m_error = std::make_exception_ptr(
      cancelled_error(cancel_message().empty() ? std::string("task was cancelled") : cancel_message()));
  t_current = previous;
  complete(status::cancelled);
}

void task_base::on_root_final() noexcept {
  auto error = take_result_and_destroy_frame();
  auto final_status = status::finished;
  if (!error && m_must_cancel) {
    // Cancelled while running (by itself, say) and returned without another
    // suspension: the request still wins, as in asyncio, and the value goes.
    error = std::make_exception_ptr(
        cancelled_error(cancel_message().empty() ? std::string("task was cancelled") : cancel_message()));
  }
  if (error) {
    final_status = status::failed;
    try {
      std::rethrow_exception(error);
    } catch (const cancelled_error&) {
      final_status = status::cancelled;
    } catch (...) {
    }
  }
  m_error = std::move(error);
  complete(final_status);
}

void task_base::complete(status final_status) noexcept {
  trace_task_done(*this);
  m_status = final_status;
  m_waiter = nullptr;
  m_must_cancel = false;
  auto& impl = impl_of(*m_loop);
  loop_access::unlink(impl, *this);
  if (final_status == status::failed && !m_retrieved) {
    // The pending list's links are free now: they hold the error list's.
    m_all_next = impl.exc_head;
    m_all_prev = nullptr;
    if (impl.exc_head != nullptr) {
      impl.exc_head->m_all_prev = this;
    }
    impl.exc_head = this;
    m_in_exc_list = true;
  }
  while (m_links != nullptr) {
    auto* link = m_links;
    m_links = link->next;
    if (m_links != nullptr) {
      m_links->prev = nullptr;
    } else {
      m_links_tail = nullptr;
    }
    link->next = link->prev = nullptr;
    link->task = nullptr;
    link->fn(link, this);
  }
  release(); // the loop's reference
}

void task_base::mark_retrieved() noexcept {
  m_retrieved = true;
  if (m_in_exc_list) {
    m_in_exc_list = false;
    if (m_loop != nullptr) {
      auto& impl = impl_of(*m_loop);
      if (m_all_prev != nullptr) {
        m_all_prev->m_all_next = m_all_next;
      } else {
        impl.exc_head = m_all_next;
      }
      if (m_all_next != nullptr) {
        m_all_next->m_all_prev = m_all_prev;
      }
    }
    m_all_prev = m_all_next = nullptr;
  }
}

void task_base::destroy() noexcept {
  if (m_in_exc_list) {
    auto* loop = m_loop;
    const auto task_name = name();
    const auto error = m_error;
    mark_retrieved();
    std::string place;
    try {
      place = describe_location(m_where);
    } catch (...) {
    }
    if (loop != nullptr) {
      report(*loop, "Task exception was never retrieved", error, task_name, std::move(place));
    } else {
      event_loop_detached_report("Task exception was never retrieved", error, task_name, place);
    }
  }
  destroy_self();
}

void task_base::add_done_link(done_link& link) noexcept {
  link.task = this;
  link.next = nullptr;
  link.prev = m_links_tail;
  if (m_links_tail != nullptr) {
    m_links_tail->next = &link;
  } else {
    m_links = &link;
  }
  m_links_tail = &link;
}

void task_base::remove_done_link(done_link& link) noexcept {
  if (link.task != this) {
    return;
  }
  if (link.prev != nullptr) {
    link.prev->next = link.next;
  } else {
    m_links = link.next;
  }
  if (link.next != nullptr) {
    link.next->prev = link.prev;
  } else {
    m_links_tail = link.prev;
  }
  link.next = link.prev = nullptr;
  link.task = nullptr;
}

void task_base::add_done_callback(unique_function<void()> callback) {
  if (done()) {
    m_loop->call_soon(std::move(callback));
    return;
  }
  auto* link = new user_link();
  link->callback = std::move(callback);
  link->loop = m_loop;
  link->owner = link;
  link->fn = [](done_link* l, task_base* /*done*/) noexcept {
    auto* self = static_cast<user_link*>(l);
    try {
      self->loop->call_soon(std::move(self->callback));
    } catch (...) {
      report(*self->loop, "a done callback could not be scheduled", std::current_exception());
    }
    delete self;
  };
  add_done_link(*link);
}

// ---- task plumbing used by the loop ----

void loop_access::link(loop_impl& impl, task_base& t) noexcept {
  t.m_all_prev = nullptr;
  t.m_all_next = impl.tasks_head;
  if (impl.tasks_head != nullptr) {
    impl.tasks_head->m_all_prev = &t;
  }
  impl.tasks_head = &t;
  ++impl.task_count;
}

void loop_access::unlink(loop_impl& impl, task_base& t) noexcept {
  if (t.m_all_prev != nullptr) {
    t.m_all_prev->m_all_next = t.m_all_next;
  } else if (impl.tasks_head == &t) {
    impl.tasks_head = t.m_all_next;
  }
  if (t.m_all_next != nullptr) {
    t.m_all_next->m_all_prev = t.m_all_prev;
  }
  t.m_all_prev = t.m_all_next = nullptr;
  --impl.task_count;
}

void loop_access::destroy_pending(task_base& t) noexcept {
  t.destroy_frame();
  t.m_error = std::make_exception_ptr(cancelled_error("task was destroyed while pending (the loop closed)"));
  t.m_retrieved = true;
  t.complete(task_base::status::cancelled);
}

void loop_access::detach(task_base& t) noexcept {
  t.m_loop = nullptr;
  t.m_all_prev = t.m_all_next = nullptr;
}

void task_promise_base::root_finished(task_base& t) noexcept { t.on_root_final(); }

void report_never_awaited(const source_location& where) noexcept {
  auto* loop = running_loop_or_null();
  if (loop != nullptr && loop->get_debug()) {
    std::string what;
    try {
      what = describe_location(where);
    } catch (...) {
    }
    report(*loop,
           "a coroutine (simul::task) was destroyed without being awaited or scheduled" +
               (what.empty() ? std::string() : ": " + what),
           nullptr, {}, what);
  }
}

} // namespace simul::detail
