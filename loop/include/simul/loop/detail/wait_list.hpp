#pragma once

// A FIFO of suspended tasks: the building block of locks, events and queues,
// and of the I/O objects' waits (a stream's readers, a server's closers, a
// process's exit). Internal.
//
// Each entry is a `parked_waiter` living in the waiting frame: the I/O
// awaitables derive from it and park with `park(list, h)`; `list_waiter` is
// the ready-made awaitable of the synchronization primitives.
// `signal_first()` takes the first entry off the list and wakes its task;
// `signal_all()` wakes them all, as the list's destructor does. A waiter
// cancelled while still on the list leaves it and wakes with
// `cancelled_error`; a destroyed one (its frame freed while suspended, when a
// loop closes) leaves it. A waiter cancelled after it was signalled (its
// wake-up already queued) cannot refuse the signal any more: a `list_waiter`'s
// `lost` hook runs instead, so that the primitive passes the signal on (or
// takes back what it handed over) and no wake-up is ever lost.
//
// Thread-safety: loop thread only. Lifetime: a list's owner outlives the
// waiters in it, or wakes them (its destructor does) before it goes.

#include <simul/loop/detail/task_base.hpp>

#include <coroutine>
#include <utility>

namespace simul::detail {

class wait_list;

/// One suspended task on a wait_list; the base of the awaitables that park
/// there.
class parked_waiter : public waiter {
 public:
  parked_waiter(const parked_waiter&) = delete;
  parked_waiter& operator=(const parked_waiter&) = delete;

  bool on_cancel() noexcept override {
    if (m_signalled) {
      return false;
    }
    unlink();
    abort_and_wake();
    return true;
  }

  /// Unlinks and wakes the task (the list's owner signals it).
  void notify() noexcept {
    unlink();
    m_signalled = true;
    wake();
  }

  /// True while parked in a list.
  [[nodiscard]] bool parked() const noexcept { return m_list != nullptr; }
  /// True once signalled (since the last `park`).
  [[nodiscard]] bool signalled() const noexcept { return m_signalled; }

 protected:
  parked_waiter() = default;
  /// Moves an awaiter that was not awaited yet (a combinator moving it into
  /// a task of its own); one on a list is never moved.
  parked_waiter(parked_waiter&& o) noexcept : waiter(o) {}
  ~parked_waiter() { unlink(); }

  /// In await_suspend: registers with the task and parks at the back of
  /// `list`. Returns false (do not suspend) if a cancellation is pending.
  bool park(wait_list& list, std::coroutine_handle<> h);
  /// Leaves the list, if on one.
  void unlink() noexcept;

 private:
  friend class wait_list;
  parked_waiter* m_prev = nullptr;
  parked_waiter* m_next = nullptr;
  wait_list* m_list = nullptr;
  bool m_signalled = false;
};

/// An intrusive FIFO of parked waiters.
class wait_list {
 public:
  wait_list() = default;
  wait_list(const wait_list&) = delete;
  wait_list& operator=(const wait_list&) = delete;
  ~wait_list() { signal_all(); }

  [[nodiscard]] bool empty() const noexcept { return m_head == nullptr; }
  [[nodiscard]] parked_waiter* front() const noexcept { return m_head; }

  /// Wakes the first waiter; false if there was none.
  bool signal_first() noexcept {
    if (m_head == nullptr) {
      return false;
    }
    m_head->notify();
    return true;
  }
  /// Wakes every waiter, in order.
  void signal_all() noexcept {
    while (signal_first()) {
    }
  }

 private:
  friend class parked_waiter;
  parked_waiter* m_head = nullptr;
  parked_waiter* m_tail = nullptr;
};

/// The awaitable of locks, events and queues: parks on a list until signalled.
class list_waiter final : public parked_waiter {
 public:
  /// `lost(ctx)` runs when the task is cancelled after being signalled.
  list_waiter(wait_list& list, void (*lost)(void*) noexcept = nullptr, void* ctx = nullptr) noexcept
      : m_target(&list), m_lost(lost), m_ctx(ctx) {}
  list_waiter(list_waiter&& o) noexcept
      : parked_waiter(std::move(o)), m_target(o.m_target), m_lost(o.m_lost), m_ctx(o.m_ctx) {}

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) { return park(*m_target, h); }
  void await_resume() {
    if (m_task == nullptr) {
      return; // never suspended
    }
    if (!signalled()) {
      check_cancel();
      return;
    }
    try {
      check_cancel();
    } catch (...) {
      if (m_lost != nullptr) {
        m_lost(m_ctx);
      }
      throw;
    }
  }

 private:
  wait_list* m_target;
  void (*m_lost)(void*) noexcept;
  void* m_ctx;
};

inline bool parked_waiter::park(wait_list& list, std::coroutine_handle<> h) {
  if (!suspend_on(h)) {
    return false;
  }
  m_signalled = false;
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

inline void parked_waiter::unlink() noexcept {
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
