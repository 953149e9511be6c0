// Callbacks: call_soon / call_later / call_at (the nodes behind `handle`),
// and call_soon_threadsafe / submit (the queue other threads post to).

#include "loop_internal.hpp"

#include <utility>
#include <vector>

namespace simul {

namespace detail {

void release_node(callback_node* n) noexcept {
  if (--n->refs == 0) {
    delete n;
  }
}

void callback_node_release(callback_node* node) noexcept { release_node(node); }

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

void drop_callback(callback_node* n) noexcept {
  n->cancelled = true;
  release_node(n);
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

namespace {
// Queues `f` for the loop's thread and wakes the loop if the queue was empty.
// Requires ts_mutex held and the queue open.
void post_locked(loop_impl& impl, posted_callback item) {
  const bool first = impl.ts_queue.empty();
  impl.ts_queue.push_back(std::move(item));
  if (first) {
    uv_async_send(&impl.async);
  }
}
} // namespace

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

// ---- scheduling ----

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
  detail::post_locked(*m_impl, detail::posted_callback{std::move(f), where});
}

void event_loop::post_submitted(detail::unique_function<void()> f) {
  if (m_impl->executor_shutdown.load(std::memory_order_acquire)) {
    throw broken_executor("event_loop::submit after shutdown");
  }
  std::lock_guard lock(m_impl->ts_mutex);
  if (m_impl->ts_closed) {
    throw broken_executor("event_loop::submit: the event loop is closed");
  }
  detail::post_locked(*m_impl, detail::posted_callback{std::move(f), {}});
}

void event_loop::shutdown(shutdown_options) noexcept { m_impl->executor_shutdown.store(true); }

} // namespace simul

namespace simul::detail {

void loop_post_threadsafe(event_loop& loop, unique_function<void()> f) { loop.call_soon_threadsafe(std::move(f), {}); }

} // namespace simul::detail
