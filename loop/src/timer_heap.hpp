#pragma once

// The loop's timer heap (private to loop/src): every call_later, sleep and
// deadline of a loop is an entry here; the loop keeps one libuv timer armed
// for the earliest (timers.cpp).
//
// Thread-safety: the loop's thread only. Lifetime: entries belong to their
// owners, who remove them before they go.

#include <simul/loop/detail/task_base.hpp>

#include <cstddef>
#include <vector>

namespace simul::detail {

/// A binary min-heap of timer entries keyed by (deadline, seq); each entry
/// knows its index, so removal is O(log n) without searching.
class timer_heap {
 public:
  [[nodiscard]] bool empty() const noexcept { return m_items.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return m_items.size(); }
  [[nodiscard]] timer_entry* top() const noexcept { return m_items.front(); }
  void push(timer_entry* e);
  void remove(timer_entry* e) noexcept;
  timer_entry* pop() noexcept;

 private:
  static bool less(const timer_entry* a, const timer_entry* b) noexcept {
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
  }
  void place(std::size_t i, timer_entry* e) noexcept {
    m_items[i] = e;
    e->heap_index = i;
  }
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;
  std::vector<timer_entry*> m_items;
};

} // namespace simul::detail
