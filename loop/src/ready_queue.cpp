// The loop's ready queue (ready_queue.hpp) and the idle phase that drains it:
// one round per loop iteration, what a round schedules runs in the next.

#include "loop_internal.hpp"

#include <simul/loop/detail/frame_pool.hpp>

#include <cstdio>

namespace simul::detail {

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

// ---- the loop's side ----

void start_idle(loop_impl& impl) noexcept {
  impl.idle_active = true;
  uv_idle_start(&impl.idle, [](uv_idle_t* h) { static_cast<loop_impl*>(h->data)->drain_ready(); });
}

void loop_schedule(event_loop& loop, ready_item item) { schedule(impl_of(loop), item); }

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

// ---- debug mode: slow steps and callbacks ----

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

} // namespace simul::detail
