// The event loop: libuv underneath, asyncio's iteration on top.
//
// One iteration of uv_run runs libuv's timer phase (our single uv_timer fires
// for the earliest entry of our own heap and moves what is due to the ready
// queue), then the idle phase (our uv_idle, active only while the ready queue
// is not empty, drains a snapshot of the queue and keeps poll from blocking),
// then polls for I/O. Callbacks scheduled while the queue drains run on the
// next iteration, as in asyncio.

#include "loop_internal.hpp"

#include <simul/loop/detail/frame_pool.hpp>
#include <simul/loop/task_handle.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <typeinfo>

namespace simul {

namespace detail {

namespace {

thread_local event_loop* t_running = nullptr;

void run_callback_node(void* p) noexcept;

void release_node(callback_node* n) noexcept {
  if (--n->refs == 0) {
    delete n;
  }
}

void run_callback_node(void* p) noexcept {
  auto* n = static_cast<callback_node*>(p);
  if (!n->cancelled && !n->done) {
    n->done = true;
    try {
      n->fn();
    } catch (...) {
      report(*n->loop, "Exception in callback", std::current_exception(), {}, describe_location(n->where));
    }
  }
  release_node(n);
}

void node_timer_fire(timer_entry* e) noexcept {
  auto* n = static_cast<callback_node*>(e->owner);
  // The heap's reference passes to the ready queue.
  loop_schedule(*n->loop, ready_item{&run_callback_node, n});
}

std::string describe(const std::exception_ptr& error) {
  if (!error) {
    return {};
  }
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return std::string(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    return "unknown exception";
  }
}

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

} // namespace

void callback_node_release(callback_node* node) noexcept { release_node(node); }

event_loop* running_loop_or_null() noexcept { return t_running; }

event_loop& running_loop_checked(const char* what) {
  if (t_running == nullptr) {
    throw error(std::string(what) + ": no event loop is running on this thread");
  }
  return *t_running;
}

void start_idle(loop_impl& impl) noexcept {
  impl.idle_active = true;
  uv_idle_start(&impl.idle, [](uv_idle_t* h) { static_cast<loop_impl*>(h->data)->drain_ready(); });
}

void loop_schedule(event_loop& loop, ready_item item) { schedule(loop.impl(), item); }

void loop_add_timer(event_loop& loop, timer_entry& entry) {
  auto& impl = loop.impl();
  entry.seq = ++impl.timer_seq;
  impl.timers.push(&entry);
  if (impl.timers.top() == &entry) {
    impl.rearm_timer();
  }
}

void loop_remove_timer(event_loop& loop, timer_entry& entry) noexcept {
  if (entry.armed()) {
    loop.impl().timers.remove(&entry);
  }
}

void report(event_loop& loop, std::string message, std::exception_ptr error, std::string task,
            std::string where) noexcept {
  exception_context context;
  try {
    context.message = std::move(message);
    context.exception = std::move(error);
    context.task = std::move(task);
    context.where = std::move(where);
  } catch (...) {
  }
  loop.call_exception_handler(context);
}

void event_loop_detached_report(const std::string& message, std::exception_ptr error, const std::string& task,
                                const std::string& where) noexcept {
  try {
    std::fprintf(stderr, "simul: %s%s%s%s%s%s%s%s\n", message.c_str(), task.empty() ? "" : " [", task.c_str(),
                 task.empty() ? "" : "]", where.empty() ? "" : " (created at ", where.c_str(), where.empty() ? "" : ")",
                 error ? (": " + describe(error)).c_str() : "");
  } catch (...) {
  }
}

std::string describe_location(const detail::source_location& where) {
  if (where.line() == 0 && (where.file_name() == nullptr || where.file_name()[0] == '\0')) {
    return {};
  }
  std::string out = where.file_name();
  out += ':';
  out += std::to_string(where.line());
  if (where.function_name() != nullptr && where.function_name()[0] != '\0') {
    out += " (";
    out += where.function_name();
    out += ')';
  }
  return out;
}

// ---- timer_heap ----

void timer_heap::push(timer_entry* e) {
  m_items.push_back(e);
  e->heap_index = m_items.size() - 1;
  sift_up(e->heap_index);
}

timer_entry* timer_heap::pop() noexcept {
  auto* top = m_items.front();
  remove(top);
  return top;
}

void timer_heap::remove(timer_entry* e) noexcept {
  const auto i = e->heap_index;
  auto* last = m_items.back();
  m_items.pop_back();
  e->heap_index = timer_entry::k_unarmed;
  if (last == e) {
    return;
  }
  place(i, last);
  sift_up(i);
  sift_down(last->heap_index);
}

void timer_heap::sift_up(std::size_t i) noexcept {
  auto* e = m_items[i];
  while (i > 0) {
    const auto parent = (i - 1) / 2;
    if (!less(e, m_items[parent])) {
      break;
    }
    place(i, m_items[parent]);
    i = parent;
  }
  place(i, e);
}

void timer_heap::sift_down(std::size_t i) noexcept {
  auto* e = m_items[i];
  const auto n = m_items.size();
  while (true) {
    auto child = 2 * i + 1;
    if (child >= n) {
      break;
    }
    if (child + 1 < n && less(m_items[child + 1], m_items[child])) {
      ++child;
    }
    if (!less(m_items[child], e)) {
      break;
    }
    place(i, m_items[child]);
    i = child;
  }
  place(i, e);
}

// ---- ready_queue ----

ready_queue::~ready_queue() {
  for (auto* c = m_head; c != nullptr;) {
    auto* next = c->next;
    pool_deallocate(c, sizeof(chunk));
    c = next;
  }
  if (m_spare != nullptr) {
    pool_deallocate(m_spare, sizeof(chunk));
  }
}

void ready_queue::add_chunk() {
  chunk* c = m_spare;
  if (c != nullptr) {
    m_spare = nullptr;
  } else {
    c = static_cast<chunk*>(pool_allocate(sizeof(chunk)));
  }
  c->next = nullptr;
  if (m_tail != nullptr) {
    m_tail->next = c;
  } else {
    m_head = c;
    m_head_pos = 0;
  }
  m_tail = c;
  m_tail_pos = 0;
}

void ready_queue::drop_head() noexcept {
  // Only called with items left, so a next chunk exists.
  chunk* done = m_head;
  m_head = done->next;
  m_head_pos = 0;
  if (m_spare == nullptr) {
    m_spare = done;
  } else {
    pool_deallocate(done, sizeof(chunk));
  }
}

// ---- loop_impl ----

[[gnu::noinline]] void loop_impl::run_item_timed(ready_item item) noexcept {
  // Describe the item before it runs (it may free itself).
  std::string what;
  std::string task;
  detail::source_location where;
  try {
    if (item.run == &task_base::step_thunk) {
      auto* t = static_cast<task_base*>(item.arg);
      task = t->name();
      what = "step of " + task;
      where = t->where();
    } else if (item.run == &run_callback_node) {
      what = "callback";
      where = static_cast<callback_node*>(item.arg)->where;
    }
  } catch (...) {
  }
  const auto started = std::chrono::steady_clock::now();
  item.run(item.arg);
  report_if_slow(what, task, where, std::chrono::steady_clock::now() - started);
}

void loop_impl::report_if_slow(const std::string& what, const std::string& task, const detail::source_location& where,
                               std::chrono::nanoseconds took) noexcept {
  if (took < slow_callback) {
    return;
  }
  try {
    auto place = describe_location(where);
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.3f", std::chrono::duration<double>(took).count());
    std::string text = "Executing " + (what.empty() ? std::string("a callback") : what);
    if (!place.empty()) {
      text += (task.empty() ? " scheduled at " : " created at ") + place;
    }
    text += std::string(" took ") + seconds + " seconds";
    report(*owner, std::move(text), nullptr, task, std::move(place));
  } catch (...) {
  }
}

void loop_impl::drain_ready() noexcept {
  // One round: what is queued now. What these items schedule goes behind
  // them and runs in the next iteration, as in asyncio.
  for (std::size_t n = ready.size(); n > 0; --n) {
    const auto item = ready.pop();
    if (!debug) {
      item.run(item.arg); // the common case, kept tight
    } else {
      run_item_timed(item); // out of line: times and describes the item
    }
  }
  if (ready.empty() && idle_active) {
    idle_active = false;
    uv_idle_stop(&idle);
  }
}

void loop_impl::rearm_timer() noexcept {
  if (timers.empty()) {
    if (timer_armed) {
      uv_timer_stop(&timer);
      timer_armed = false;
    }
    return;
  }
  const auto due = timers.top()->deadline;
  if (timer_armed && due == timer_due) {
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  std::uint64_t ms = 0;
  if (due > now) {
    ms = static_cast<std::uint64_t>(std::chrono::ceil<std::chrono::milliseconds>(due - now).count());
  }
  uv_update_time(&uv);
  uv_timer_start(
      &timer, [](uv_timer_t* h) { static_cast<loop_impl*>(h->data)->on_timer(); }, ms, 0);
  timer_armed = true;
  timer_due = due;
}

void loop_impl::on_timer() noexcept {
  timer_armed = false;
  const auto now = std::chrono::steady_clock::now();
  while (!timers.empty() && timers.top()->deadline <= now) {
    auto* e = timers.pop();
    e->fire(e);
  }
  rearm_timer();
}

void loop_impl::on_async() noexcept {
  std::vector<posted_callback> batch;
  {
    std::lock_guard lock(ts_mutex);
    batch.swap(ts_queue);
  }
  for (auto& item : batch) {
    const auto started = debug ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    try {
      item.fn();
    } catch (...) {
      report(*owner, "Exception in callback (call_soon_threadsafe)", std::current_exception(), {},
             describe_location(item.where));
    }
    if (debug) {
      report_if_slow("callback (call_soon_threadsafe)", {}, item.where, std::chrono::steady_clock::now() - started);
    }
  }
}

void loop_impl::check_thread(const char* what) const {
  if (debug && running_flag.load(std::memory_order_acquire) &&
      thread.load(std::memory_order_relaxed) != std::this_thread::get_id()) {
    throw error(std::string(what) +
                ": called from a thread other than the loop's while it runs (use call_soon_threadsafe)");
  }
}

} // namespace detail

// ---- handle ----

handle::handle(const handle& other) noexcept : m_node(other.m_node) {
  if (m_node != nullptr) {
    ++m_node->refs;
  }
}

handle& handle::operator=(const handle& other) noexcept {
  if (this != &other) {
    handle copy(other);
    std::swap(m_node, copy.m_node);
  }
  return *this;
}

handle& handle::operator=(handle&& other) noexcept {
  if (this != &other) {
    handle gone(std::move(*this));
    m_node = std::exchange(other.m_node, nullptr);
  }
  return *this;
}

void handle::cancel() noexcept {
  if (m_node == nullptr || m_node->cancelled) {
    return;
  }
  m_node->cancelled = true;
  if (m_node->timer.armed()) {
    detail::loop_remove_timer(*m_node->loop, m_node->timer);
    detail::release_node(m_node); // the heap's reference
  }
}

bool handle::cancelled() const noexcept { return m_node != nullptr && m_node->cancelled; }

std::chrono::steady_clock::time_point handle::when() const noexcept {
  return m_node != nullptr ? m_node->timer.deadline : std::chrono::steady_clock::time_point{};
}

// ---- event_loop ----

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
  if (const char* env = std::getenv("SIMUL_DEBUG"); env != nullptr && env[0] != '\0' && env[0] != '0') {
    impl.debug = true;
  }
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

namespace {
bool has_pending(detail::loop_impl& impl) {
  if (!impl.ready.empty() || !impl.timers.empty() || impl.task_count > 0) {
    return true;
  }
  std::lock_guard lock(impl.ts_mutex);
  return !impl.ts_queue.empty();
}
} // namespace

bool event_loop::run_once() {
  {
    detail::running_scope scope(*m_impl, "run_once");
    uv_run(&m_impl->uv, UV_RUN_ONCE);
    m_impl->stopping.store(false);
  }
  return has_pending(*m_impl);
}

bool event_loop::run_nowait() {
  {
    detail::running_scope scope(*m_impl, "run_nowait");
    uv_run(&m_impl->uv, UV_RUN_NOWAIT);
    m_impl->stopping.store(false);
  }
  return has_pending(*m_impl);
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

handle event_loop::schedule_callback(detail::unique_function<void()> f, const clock::time_point* when,
                                     const detail::source_location& where) {
  check_can_schedule(when != nullptr ? "call_at" : "call_soon");
  auto* n = new detail::callback_node();
  n->loop = this;
  n->fn = std::move(f);
  n->where = where;
  n->refs = 2; // the handle's and the queue's (or heap's)
  try {
    if (when != nullptr) {
      n->timer.deadline = *when;
      n->timer.owner = n;
      n->timer.fire = &detail::node_timer_fire;
      detail::loop_add_timer(*this, n->timer);
    } else {
      detail::loop_schedule(*this, detail::ready_item{&detail::run_callback_node, n});
    }
  } catch (...) {
    delete n;
    throw;
  }
  return handle(n);
}

void event_loop::post_threadsafe(detail::unique_function<void()> f, const detail::source_location& where) {
  std::lock_guard lock(m_impl->ts_mutex);
  if (m_impl->ts_closed) {
    throw error("call_soon_threadsafe: the event loop is closed");
  }
  const bool first = m_impl->ts_queue.empty();
  m_impl->ts_queue.push_back(detail::posted_callback{std::move(f), where});
  if (first) {
    uv_async_send(&m_impl->async);
  }
}

void event_loop::post_submitted(detail::unique_function<void()> f) {
  if (m_impl->executor_shutdown.load(std::memory_order_acquire)) {
    throw broken_executor("event_loop::submit after shutdown");
  }
  std::lock_guard lock(m_impl->ts_mutex);
  if (m_impl->ts_closed) {
    throw broken_executor("event_loop::submit: the event loop is closed");
  }
  const bool first = m_impl->ts_queue.empty();
  m_impl->ts_queue.push_back(detail::posted_callback{std::move(f), {}});
  if (first) {
    uv_async_send(&m_impl->async);
  }
}

void event_loop::shutdown(shutdown_options) noexcept { m_impl->executor_shutdown.store(true); }

void event_loop::set_exception_handler(exception_handler handler) { m_impl->handler = std::move(handler); }

void event_loop::call_exception_handler(const exception_context& context) noexcept {
  try {
    if (m_impl->handler) {
      m_impl->handler(*this, context);
    } else {
      default_exception_handler(*this, context);
    }
  } catch (...) {
    detail::event_loop_detached_report("the exception handler threw while reporting: " + context.message,
                                       std::current_exception(), context.task, context.where);
  }
}

void event_loop::default_exception_handler(event_loop&, const exception_context& context) {
  detail::event_loop_detached_report(context.message, context.exception, context.task, context.where);
}

void event_loop::set_debug(bool enabled) noexcept { m_impl->debug = enabled; }
bool event_loop::get_debug() const noexcept { return m_impl->debug; }
void event_loop::set_slow_callback_duration(std::chrono::nanoseconds limit) noexcept { m_impl->slow_callback = limit; }

void event_loop::close() {
  auto& impl = *m_impl;
  if (impl.closed) {
    return;
  }
  if (impl.running_flag.load(std::memory_order_acquire)) {
    throw error("close: cannot close a running event loop");
  }
  // 1. Cancel what is pending and let it unwind (finally blocks may still
  // await for a while: up to a few seconds).
  if (impl.task_count > 0 || !impl.ready.empty()) {
    detail::running_scope scope(impl, "close");
    std::vector<basic_task_handle> pending;
    for (auto* t = impl.tasks_head; t != nullptr; t = detail::loop_access::next(*t)) {
      pending.emplace_back(t);
    }
    for (auto& t : pending) {
      t.cancel("the event loop is closing");
    }
    pending.clear();
    const auto deadline = clock::now() + std::chrono::seconds(2);
    // A timer at the deadline bounds the poll even if nothing else would wake it.
    detail::timer_entry guard;
    guard.deadline = deadline;
    guard.fire = [](detail::timer_entry*) noexcept {};
    detail::loop_add_timer(*this, guard);
    while ((impl.task_count > 0 || !impl.ready.empty()) && clock::now() < deadline) {
      uv_run(&impl.uv, UV_RUN_ONCE);
    }
    detail::loop_remove_timer(*this, guard);
  }
  // 2. Tasks that would not finish: destroy their frames.
  while (impl.tasks_head != nullptr) {
    auto* t = impl.tasks_head;
    detail::report(*this,
                   "Task was destroyed but it is pending (it did not finish after the closing loop cancelled it)",
                   nullptr, t->name(), detail::describe_location(t->where()));
    detail::loop_access::destroy_pending(*t);
  }
  // 3. Drop what is queued: callbacks are released without running.
  for (int round = 0; round < 2; ++round) {
    for (std::size_t n = impl.ready.size(); n > 0; --n) {
      const auto item = impl.ready.pop();
      if (item.run == &detail::run_callback_node) {
        auto* n = static_cast<detail::callback_node*>(item.arg);
        n->cancelled = true;
        detail::release_node(n);
      }
    }
  }
  while (!impl.timers.empty()) {
    auto* e = impl.timers.pop();
    if (e->fire == &detail::node_timer_fire) {
      auto* n = static_cast<detail::callback_node*>(e->owner);
      n->cancelled = true;
      detail::release_node(n);
    }
  }
  std::vector<detail::posted_callback> dropped;
  {
    std::lock_guard lock(impl.ts_mutex);
    impl.ts_closed = true;
    dropped.swap(impl.ts_queue);
  }
  dropped.clear();
  // 4. Close every handle, ours and any left open, and free libuv's loop.
  impl.closed = true;
  if (impl.idle_active) {
    uv_idle_stop(&impl.idle);
    impl.idle_active = false;
  }
  uv_walk(
      &impl.uv,
      [](uv_handle_t* h, void* arg) {
        auto& li = *static_cast<detail::loop_impl*>(arg);
        if (uv_is_closing(h) != 0) {
          return;
        }
        const bool ours = h == reinterpret_cast<uv_handle_t*>(&li.idle) ||
                          h == reinterpret_cast<uv_handle_t*>(&li.timer) ||
                          h == reinterpret_cast<uv_handle_t*>(&li.async);
        if (!ours && li.debug) {
          detail::report(*li.owner, std::string("a handle was left open at close: ") + uv_handle_type_name(h->type));
        }
        if (h->type == UV_PROCESS) {
          detail::close_process_at_loop_close(h); // frees its state, reaps the child later
          return;
        }
        if (h->type == UV_SIGNAL && detail::close_signal_at_loop_close(h)) {
          return;
        }
        if (h->type == UV_POLL && detail::close_fd_watch_at_loop_close(h)) {
          return;
        }
        uv_close(h, nullptr);
      },
      &impl);
  uv_run(&impl.uv, UV_RUN_DEFAULT);
  if (int rc = uv_loop_close(&impl.uv); rc != 0) {
    detail::report(*this, std::string("uv_loop_close failed: ") + uv_strerror(rc));
  }
  // 5. Tasks whose error nobody retrieved yet report to stderr from now on.
  for (auto* t = impl.exc_head; t != nullptr;) {
    auto* next = detail::loop_access::next_exc(*t);
    detail::loop_access::detach(*t);
    t = next;
  }
  impl.exc_head = nullptr;
}

event_loop& get_running_loop() { return detail::running_loop_checked("get_running_loop"); }

basic_task_handle current_task() { return basic_task_handle(detail::current_task_or_null()); }

std::vector<basic_task_handle> all_tasks(event_loop& loop) {
  std::vector<basic_task_handle> out;
  out.reserve(loop.impl().task_count);
  for (auto* t = loop.impl().tasks_head; t != nullptr; t = detail::loop_access::next(*t)) {
    out.emplace_back(t);
  }
  return out;
}

std::vector<basic_task_handle> all_tasks() { return all_tasks(detail::running_loop_checked("all_tasks")); }

} // namespace simul
