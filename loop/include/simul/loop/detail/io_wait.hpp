#pragma once

// The waiting part of the loop's I/O awaitables (streams, servers, UDP,
// subprocesses): a waiter that parks in an intrusive list owned by an I/O
// object until that object notifies it. Internal.
//
// A notified waiter is unlinked and its task woken; a cancelled one unlinks
// itself and wakes with the cancellation; a destroyed one (its frame freed
// while suspended, when a loop closes) unlinks itself. The list's owner must
// outlive the waiters in it, which the awaitables ensure by holding a
// reference to the owner.
//
// Thread-safety: loop thread only.

#include <simul/loop/detail/task_base.hpp>

#include <coroutine>

namespace simul::detail {

class io_wait_list;

/// A waiter parked in an `io_wait_list`.
class io_waiter : public waiter {
 public:
  io_waiter() = default;
  io_waiter(const io_waiter&) = delete;
  io_waiter& operator=(const io_waiter&) = delete;
  ~io_waiter() { unlink(); }

  bool on_cancel() noexcept override {
    unlink();
    abort_and_wake();
    return true;
  }

  /// Unlinks and wakes the task. Called by the list's owner.
  void notify() noexcept {
    unlink();
    wake();
  }

  /// True while parked in a list.
  [[nodiscard]] bool parked() const noexcept { return m_list != nullptr; }

 protected:
  /// In await_suspend: registers with the task and parks in `list`. Returns
  /// false (do not suspend) if a cancellation is pending.
  bool park(io_wait_list& list, std::coroutine_handle<> h);
  void unlink() noexcept;

 private:
  friend class io_wait_list;
  io_waiter* m_prev = nullptr;
  io_waiter* m_next = nullptr;
  io_wait_list* m_list = nullptr;
};

/// An intrusive FIFO of parked waiters.
class io_wait_list {
 public:
  io_wait_list() = default;
  io_wait_list(const io_wait_list&) = delete;
  io_wait_list& operator=(const io_wait_list&) = delete;
  ~io_wait_list() { notify_all(); }

  [[nodiscard]] bool empty() const noexcept { return m_head == nullptr; }
  [[nodiscard]] io_waiter* front() const noexcept { return m_head; }

  /// Wakes every parked waiter (each is unlinked first).
  void notify_all() noexcept {
    while (m_head != nullptr) {
      m_head->notify();
    }
  }

 private:
  friend class io_waiter;
  io_waiter* m_head = nullptr;
  io_waiter* m_tail = nullptr;
};

inline bool io_waiter::park(io_wait_list& list, std::coroutine_handle<> h) {
  if (!suspend_on(h)) {
    return false;
  }
  m_list = &list;
  m_next = nullptr;
  m_prev = list.m_tail;
  if (list.m_tail != nullptr) {
    list.m_tail->m_next = this;
  } else {
    list.m_head = this;
  }
  list.m_tail = this;
  return true;
}

inline void io_waiter::unlink() noexcept {
  if (m_list == nullptr) {
    return;
  }
  if (m_prev != nullptr) {
    m_prev->m_next = m_next;
  } else {
    m_list->m_head = m_next;
  }
  if (m_next != nullptr) {
    m_next->m_prev = m_prev;
  } else {
    m_list->m_tail = m_prev;
  }
  m_prev = m_next = nullptr;
  m_list = nullptr;
}

} // namespace simul::detail
