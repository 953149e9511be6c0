// The loop's timers: a heap of deadlines (timer_heap.hpp) under one libuv
// timer, armed for the earliest. When it fires, what is due goes to the
// ready queue (each entry's `fire`), and the timer is armed again.

#include "loop_internal.hpp"

#include <chrono>
#include <cstdint>

namespace simul::detail {

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

// ---- the loop's side ----

void loop_add_timer(event_loop& loop, timer_entry& entry) {
  auto& impl = impl_of(loop);
  entry.seq = ++impl.timer_seq;
  impl.timers.push(&entry);
  if (impl.timers.top() == &entry) {
    impl.rearm_timer();
  }
}

void loop_remove_timer(event_loop& loop, timer_entry& entry) noexcept {
  if (entry.armed()) {
    impl_of(loop).timers.remove(&entry);
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

} // namespace simul::detail
