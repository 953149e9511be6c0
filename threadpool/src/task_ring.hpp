#pragma once

// A double-ended queue of tasks in fixed-size blocks: the storage behind every
// queue of the pool.
//
// Not synchronised: each queue is guarded by its owner's lock. Tasks live in
// blocks of 256 slots (16 KiB) linked both ways; a block that empties goes to
// a small cache of spare blocks instead of back to the allocator, so a queue
// that has reached its working size allocates nothing, and a queue that
// briefly holds a million tasks never copies them or touches memory it does
// not use (a single growing array would, on every doubling).

#include <simul/threadpool/detail/pool_task.hpp>

#include <cstddef>
#include <new>
#include <utility>

namespace simul::detail {

class task_ring {
 public:
  task_ring() = default;
  task_ring(const task_ring&) = delete;
  task_ring& operator=(const task_ring&) = delete;

  ~task_ring() {
    while (!empty()) {
      (void)pop_front();
    }
    delete m_head;
    while (m_spare != nullptr) {
      delete std::exchange(m_spare, m_spare->next);
    }
  }

  [[nodiscard]] std::size_t size() const noexcept { return m_size; }
  [[nodiscard]] bool empty() const noexcept { return m_size == 0; }

  void push_back(pool_task&& task) {
    if (m_tail == nullptr) {
      m_head = m_tail = take_block();
      m_head_index = m_tail_index = 0;
    } else if (m_tail_index == k_block) {
      auto* fresh = take_block();
      fresh->prev = m_tail;
      m_tail->next = fresh;
      m_tail = fresh;
      m_tail_index = 0;
    }
    ::new (m_tail->slot(m_tail_index)) pool_task(std::move(task));
    ++m_tail_index;
    ++m_size;
  }

  /// Newest task; the queue must not be empty.
  pool_task pop_back() noexcept {
    if (m_tail_index == 0) {
      auto* empty_block = m_tail;
      m_tail = m_tail->prev;
      m_tail->next = nullptr;
      give_block(empty_block);
      m_tail_index = k_block;
    }
    --m_tail_index;
    --m_size;
    return take(m_tail->slot(m_tail_index));
  }

  /// Oldest task; the queue must not be empty.
  pool_task pop_front() noexcept {
    auto task = take(m_head->slot(m_head_index));
    ++m_head_index;
    --m_size;
    if (m_size == 0) {
      // Rewind within the one remaining block.
      while (m_tail != m_head) {
        auto* spare = m_tail;
        m_tail = m_tail->prev;
        give_block(spare);
      }
      m_head->next = nullptr;
      m_head_index = m_tail_index = 0;
    } else if (m_head_index == k_block) {
      auto* spare = m_head;
      m_head = m_head->next;
      m_head->prev = nullptr;
      give_block(spare);
      m_head_index = 0;
    }
    return task;
  }

 private:
  static constexpr std::size_t k_block = 256;
  static constexpr int k_max_spares = 8;

  struct block {
    alignas(pool_task) unsigned char storage[k_block * sizeof(pool_task)];
    block* next = nullptr;
    block* prev = nullptr;
    void* slot(std::size_t i) noexcept { return storage + i * sizeof(pool_task); }
  };

  static pool_task take(void* slot) noexcept {
    auto* task = std::launder(static_cast<pool_task*>(slot));
    pool_task out(std::move(*task));
    task->~pool_task();
    return out;
  }

  block* take_block() {
    if (m_spare != nullptr) {
      auto* b = std::exchange(m_spare, m_spare->next);
      --m_spares;
      b->next = b->prev = nullptr;
      return b;
    }
    return new block;
  }

  void give_block(block* b) noexcept {
    if (m_spares < k_max_spares) {
      b->next = m_spare;
      b->prev = nullptr;
      m_spare = b;
      ++m_spares;
    } else {
      delete b;
    }
  }

  block* m_head = nullptr;
  block* m_tail = nullptr;
  std::size_t m_head_index = 0;
  std::size_t m_tail_index = 0; // one past the newest task in m_tail
  std::size_t m_size = 0;
  block* m_spare = nullptr;
  int m_spares = 0;
};

} // namespace simul::detail
