#pragma once

// The loop's ready queue (private to loop/src): what runs in the loop's next
// iteration, task steps and callbacks alike (ready_queue.cpp).
//
// Thread-safety: the loop's thread only (other threads post through
// call_soon_threadsafe's queue, callbacks.cpp).

#include <simul/loop/detail/task_base.hpp>

#include <cstddef>
#include <cstdint>

namespace simul::detail {

/// The loop's FIFO of ready items. Items sit in chunks of 63 (a 1 KiB block
/// of the small-block pool), linked front to back: a push never moves what is
/// queued (a growing vector copied the whole queue, and faulted in fresh
/// memory on every new loop), a chunk drained is kept for the next push or
/// handed back to the pool, whose blocks stay mapped between loops.
class ready_queue {
 public:
  ready_queue() = default;
  ready_queue(const ready_queue&) = delete;
  ready_queue& operator=(const ready_queue&) = delete;
  ~ready_queue();

  [[nodiscard]] bool empty() const noexcept { return m_size == 0; }
  [[nodiscard]] std::size_t size() const noexcept { return m_size; }
  /// Throws std::bad_alloc (and queues nothing) if a chunk cannot be had.
  void push(ready_item item) {
    if (m_tail_pos == chunk::k_items) {
      add_chunk();
    }
    m_tail->items[m_tail_pos++] = item;
    ++m_size;
  }
  /// The oldest item; requires !empty().
  ready_item pop() noexcept {
    const ready_item out = m_head->items[m_head_pos++];
    if (--m_size == 0) {
      // Empty: m_head == m_tail. Start the chunk over, keep it.
      m_head_pos = m_tail_pos = 0;
    } else if (m_head_pos == chunk::k_items) {
      drop_head();
    }
    return out;
  }

 private:
  struct chunk {
    static constexpr std::uint32_t k_items = 63;
    chunk* next;
    ready_item items[k_items];
  };
  void add_chunk();
  void drop_head() noexcept;

  chunk* m_head = nullptr;  // pop reads here
  chunk* m_tail = nullptr;  // push writes here
  chunk* m_spare = nullptr; // one drained chunk, kept for the next push
  std::uint32_t m_head_pos = 0;
  std::uint32_t m_tail_pos = chunk::k_items; // no chunk yet: the first push adds one
  std::size_t m_size = 0;
};

} // namespace simul::detail
