#pragma once

// A growable ring of tasks: the storage behind every queue of the pool.
//
// Not synchronised: each ring is guarded by its owner's mutex. It only grows
// (doubling), so a pool that has reached its working size allocates nothing
// more for queueing.

#include <simul/threadpool/detail/pool_task.hpp>

#include <cstddef>
#include <memory>
#include <utility>

namespace simul::detail {

class task_ring {
 public:
  explicit task_ring(std::size_t capacity = 256)
      : m_slots(new pool_task[round_up(capacity)]), m_mask(round_up(capacity) - 1) {}

  [[nodiscard]] std::size_t size() const noexcept { return m_tail - m_head; }
  [[nodiscard]] bool empty() const noexcept { return m_tail == m_head; }

  void push_back(pool_task&& task) {
    if (size() == m_mask + 1) {
      grow();
    }
    m_slots[m_tail & m_mask] = std::move(task);
    ++m_tail;
  }

  /// Newest task; the ring must not be empty.
  pool_task pop_back() noexcept {
    --m_tail;
    return std::move(m_slots[m_tail & m_mask]);
  }

  /// Oldest task; the ring must not be empty.
  pool_task pop_front() noexcept {
    auto task = std::move(m_slots[m_head & m_mask]);
    ++m_head;
    return task;
  }

 private:
  static std::size_t round_up(std::size_t n) noexcept {
    std::size_t p = 16;
    while (p < n) {
      p *= 2;
    }
    return p;
  }

  void grow() {
    const auto capacity = (m_mask + 1) * 2;
    std::unique_ptr<pool_task[]> fresh(new pool_task[capacity]);
    const auto count = size();
    for (std::size_t i = 0; i < count; ++i) {
      fresh[i] = std::move(m_slots[(m_head + i) & m_mask]);
    }
    m_slots = std::move(fresh);
    m_mask = capacity - 1;
    m_head = 0;
    m_tail = count;
  }

  std::unique_ptr<pool_task[]> m_slots;
  std::size_t m_mask;
  std::size_t m_head = 0;
  std::size_t m_tail = 0;
};

} // namespace simul::detail
