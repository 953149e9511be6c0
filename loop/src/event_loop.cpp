// The event loop: libuv underneath, asyncio's iteration on top.
//
// One iteration of uv_run runs libuv's timer phase (our single uv_timer fires
// for the earliest entry of our own heap and moves what is due to the ready
// queue: timers.cpp), then the idle phase (our uv_idle, active only while the
// ready queue is not empty, drains a snapshot of the queue and keeps poll
// from blocking: ready_queue.cpp), then polls for I/O. Callbacks scheduled
// while the queue drains run on the next iteration, as in asyncio.
//
// This file owns the loop's life: making it, running it (run, run_once,
// run_until_complete...), stopping it and closing it.

#include "loop_internal.hpp"

#include <simul/loop/format_tasks.hpp>

#include <simul/loop/task_handle.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace simul {

namespace detail {

namespace {

thread_local event_loop* t_running = nullptr;

// RAII for the "this loop is running on this thread" state.
class running_scope {
 public:
  running_scope(loop_impl& impl, const char* what) : m_impl(impl) {
    if (impl.closed) {
      throw error(std::string(what) + ": the event loop is closed");
    }
    if (impl.running_flag.load(std::memory_order_acquire)) {
      throw error(std::string(what) + ": this event loop is already running");
    }
    if (t_running != nullptr) {
      throw error(std::string(what) + ": another event loop is running on this thread (one loop per thread)");
    }
    t_running = impl.owner;
    impl.thread.store(std::this_thread::get_id(), std::memory_order_relaxed);
    impl.running_flag.store(true, std::memory_order_release);
  }
  ~running_scope() {
    m_impl.running_flag.store(false, std::memory_order_release);
    m_impl.thread.store(std::thread::id{}, std::memory_order_relaxed);
    t_running = nullptr;
  }
  running_scope(const running_scope&) = delete;
  running_scope& operator=(const running_scope&) = delete;

 private:
  loop_impl& m_impl;
};

// True if the environment variable is set to something other than "" or "0".
bool env_flag(const char* name) noexcept {
  const char* env = std::getenv(name);
  return env != nullptr && env[0] != '\0' && env[0] != '0';
}

bool has_pending(loop_impl& impl) {
  if (!impl.ready.empty() || !impl.timers.empty() || impl.task_count > 0) {
    return true;
  }
  std::lock_guard lock(impl.ts_mutex);
  return !impl.ts_queue.empty();
}

// ---- close(), one step per function ----

// 1. Cancels what is pending and lets it unwind (finally blocks may still
// await for a while: up to a few seconds).
void cancel_pending_tasks(loop_impl& impl) {
  if (impl.task_count == 0 && impl.ready.empty()) {
    return;
  }
  running_scope scope(impl, "close");
  std::vector<basic_task_handle> pending;
  for (auto* t = impl.tasks_head; t != nullptr; t = loop_access::next(*t)) {
    pending.emplace_back(t);
  }
  for (auto& t : pending) {
    t.cancel("the event loop is closing");
  }
  pending.clear();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  // A timer at the deadline bounds the poll even if nothing else would wake it.
  timer_entry guard;
  guard.deadline = deadline;
  guard.fire = [](timer_entry*) noexcept {};
  loop_add_timer(*impl.owner, guard);
  while ((impl.task_count > 0 || !impl.ready.empty()) && std::chrono::steady_clock::now() < deadline) {
    uv_run(&impl.uv, UV_RUN_ONCE);
  }
  loop_remove_timer(*impl.owner, guard);
}

// 2. Tasks that would not finish: destroys their frames.
void destroy_unfinished_tasks(loop_impl& impl) noexcept {
  while (impl.tasks_head != nullptr) {
    auto* t = impl.tasks_head;
    std::string message =
        "Task was destroyed but it is pending (it did not finish after the closing loop cancelled it)";
    if (impl.debug) { // what it still awaited, as format_tasks shows it
      try {
        message += "; it awaits:\n" + format_task(*t, 2);
      } catch (...) { // out of memory: the short report still goes out
      }
    }
    report(*impl.owner, std::move(message), nullptr, t->name(), describe_location(t->where()));
    loop_access::destroy_pending(*t);
  }
}

// 3. Per-loop objects (loop_local.hpp), newest first, while handles are open.
void destroy_loop_locals(loop_impl& impl) noexcept {
  impl.locals_closing = true;
  while (!impl.locals.empty()) {
    auto last = std::move(impl.locals.back().value);
    impl.locals.pop_back();
    last.reset();
  }
}

// 4. Drops what is queued: callbacks are released without running.
void drop_queued_callbacks(loop_impl& impl) noexcept {
  for (int round = 0; round < 2; ++round) {
    for (std::size_t n = impl.ready.size(); n > 0; --n) {
      const auto item = impl.ready.pop();
      if (item.run == &run_callback_node) {
        drop_callback(static_cast<callback_node*>(item.arg));
      }
    }
  }
  while (!impl.timers.empty()) {
    auto* e = impl.timers.pop();
    if (e->fire == &node_timer_fire) {
      drop_callback(static_cast<callback_node*>(e->owner));
    }
  }
  std::vector<posted_callback> dropped;
  {
    std::lock_guard lock(impl.ts_mutex);
    impl.ts_closed = true;
    dropped.swap(impl.ts_queue);
  }
}

// 5. Closes one handle found by uv_walk: ours, or one left open.
void close_one_handle(uv_handle_t* h, void* arg) {
  auto& impl = *static_cast<loop_impl*>(arg);
  if (uv_is_closing(h) != 0) {
    return;
  }
  const bool ours = h == reinterpret_cast<uv_handle_t*>(&impl.idle) ||
                    h == reinterpret_cast<uv_handle_t*>(&impl.timer) ||
                    h == reinterpret_cast<uv_handle_t*>(&impl.async);
  if (!ours && impl.debug) {
    report(*impl.owner, std::string("a handle was left open at close: ") + uv_handle_type_name(h->type));
  }
  if (h->type == UV_PROCESS) {
    close_process_at_loop_close(h); // frees its state, reaps the child later
    return;
  }
  if (h->type == UV_SIGNAL && close_signal_at_loop_close(h)) {
    return;
  }
  if (h->type == UV_POLL && close_child_watch_at_loop_close(h)) {
    return; // a child's pidfd: frees its state, reaps the child later
  }
  if (h->type == UV_POLL && close_fd_watch_at_loop_close(h)) {
    return;
  }
  uv_close(h, nullptr);
}

// 5. Closes every handle and frees libuv's loop.
void close_handles(loop_impl& impl) noexcept {
  if (impl.idle_active) {
    uv_idle_stop(&impl.idle);
    impl.idle_active = false;
  }
  uv_walk(&impl.uv, &close_one_handle, &impl);
  uv_run(&impl.uv, UV_RUN_DEFAULT);
  if (int rc = uv_loop_close(&impl.uv); rc != 0) {
    report(*impl.owner, std::string("uv_loop_close failed: ") + uv_strerror(rc));
  }
}

// 6. Tasks whose error nobody retrieved yet report to stderr from now on.
void detach_unretrieved_errors(loop_impl& impl) noexcept {
  for (auto* t = impl.exc_head; t != nullptr;) {
    auto* next = loop_access::next_exc(*t);
    loop_access::detach(*t);
    t = next;
  }
  impl.exc_head = nullptr;
}

} // namespace

event_loop* running_loop_or_null() noexcept { return t_running; }

event_loop& running_loop_checked(const char* what) {
  if (t_running == nullptr) {
    throw error(std::string(what) + ": no event loop is running on this thread");
  }
  return *t_running;
}

void loop_impl::check_thread(const char* what) const {
  if (debug && running_flag.load(std::memory_order_acquire) &&
      thread.load(std::memory_order_relaxed) != std::this_thread::get_id()) {
    throw error(std::string(what) +
                ": called from a thread other than the loop's while it runs (use call_soon_threadsafe)");
  }
}

} // namespace detail

event_loop::event_loop() : m_impl(std::make_unique<detail::loop_impl>(*this)) {
  auto& impl = *m_impl;
  if (int rc = uv_loop_init(&impl.uv); rc != 0) {
    throw error(std::string("event_loop: uv_loop_init failed: ") + uv_strerror(rc));
  }
  impl.uv.data = &impl;
  uv_idle_init(&impl.uv, &impl.idle);
  impl.idle.data = &impl;
  uv_timer_init(&impl.uv, &impl.timer);
  impl.timer.data = &impl;
  uv_async_init(&impl.uv, &impl.async, [](uv_async_t* h) { static_cast<detail::loop_impl*>(h->data)->on_async(); });
  impl.async.data = &impl;
  impl.debug = detail::env_flag("SIMUL_DEBUG");
  impl.eager_tasks = detail::env_flag("SIMUL_EAGER_TASKS");
}

event_loop::~event_loop() {
  try {
    close();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "simul: event_loop destroyed while it could not close: %s\n", e.what());
    std::abort();
  }
}

void event_loop::run() {
  detail::running_scope scope(*m_impl, "run");
  while (true) {
    uv_run(&m_impl->uv, UV_RUN_ONCE);
    if (m_impl->stopping.exchange(false)) {
      break;
    }
  }
}

void event_loop::run_until_task_done(detail::task_base& t) {
  detail::running_scope scope(*m_impl, "run_until_complete");
  while (!t.done()) {
    uv_run(&m_impl->uv, UV_RUN_ONCE);
    if (m_impl->stopping.exchange(false) && !t.done()) {
      throw error("run_until_complete: the event loop stopped before the task completed");
    }
  }
}

bool event_loop::run_once() {
  {
    detail::running_scope scope(*m_impl, "run_once");
    uv_run(&m_impl->uv, UV_RUN_ONCE);
    m_impl->stopping.store(false);
  }
  return detail::has_pending(*m_impl);
}

bool event_loop::run_nowait() {
  {
    detail::running_scope scope(*m_impl, "run_nowait");
    uv_run(&m_impl->uv, UV_RUN_NOWAIT);
    m_impl->stopping.store(false);
  }
  return detail::has_pending(*m_impl);
}

int event_loop::backend_fd() const {
  if (m_impl->closed) {
    throw error("backend_fd: the event loop is closed");
  }
  return uv_backend_fd(&m_impl->uv);
}

int event_loop::backend_timeout() const {
  if (m_impl->closed) {
    throw error("backend_timeout: the event loop is closed");
  }
  if (!m_impl->ready.empty()) {
    return 0;
  }
  if (!m_impl->timers.empty()) {
    const auto left = m_impl->timers.top()->deadline - clock::now();
    if (left <= clock::duration::zero()) {
      return 0;
    }
    // A far deadline (a saturated `no_timeout`) must not wrap into a
    // negative poll timeout, which means "wait forever" to poll and epoll
    // but reads as an error to other hosts.
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<decltype(ms)>(ms, std::numeric_limits<int>::max()));
  }
  return uv_backend_timeout(&m_impl->uv);
}

void event_loop::stop() {
  m_impl->stopping.store(true);
  std::lock_guard lock(m_impl->ts_mutex);
  if (!m_impl->ts_closed) {
    uv_async_send(&m_impl->async);
  }
}

bool event_loop::is_closed() const noexcept { return m_impl->closed; }
bool event_loop::is_running() const noexcept { return m_impl->running_flag.load(std::memory_order_acquire); }

void event_loop::check_can_schedule(const char* what) const {
  if (m_impl->closed) {
    throw error(std::string(what) + ": the event loop is closed");
  }
  m_impl->check_thread(what);
}

void event_loop::set_eager_tasks(bool enabled) noexcept { m_impl->eager_tasks = enabled; }
bool event_loop::get_eager_tasks() const noexcept { return m_impl->eager_tasks; }

bool event_loop::starts_eagerly(std::optional<bool> eager) const noexcept {
  // asyncio starts a task eagerly only if its loop is running (here: on
  // this thread, the one create_task is called from).
  return eager.value_or(m_impl->eager_tasks) && detail::running_loop_or_null() == this;
}

void event_loop::close() {
  auto& impl = *m_impl;
  if (impl.closed) {
    return;
  }
  if (impl.running_flag.load(std::memory_order_acquire)) {
    throw error("close: cannot close a running event loop");
  }
  detail::cancel_pending_tasks(impl);
  detail::destroy_unfinished_tasks(impl);
  detail::destroy_loop_locals(impl);
  detail::drop_queued_callbacks(impl);
  impl.closed = true;
  detail::close_handles(impl);
  detail::detach_unretrieved_errors(impl);
}

event_loop& get_running_loop() { return detail::running_loop_checked("get_running_loop"); }

basic_task_handle current_task() { return basic_task_handle(detail::current_task_or_null()); }

std::vector<basic_task_handle> all_tasks(event_loop& loop) {
  auto& impl = detail::impl_of(loop);
  std::vector<basic_task_handle> out;
  out.reserve(impl.task_count);
  for (auto* t = impl.tasks_head; t != nullptr; t = detail::loop_access::next(*t)) {
    out.emplace_back(t);
  }
  return out;
}

std::vector<basic_task_handle> all_tasks() { return all_tasks(detail::running_loop_checked("all_tasks")); }

} // namespace simul
