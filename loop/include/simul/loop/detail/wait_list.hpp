#pragma once

// A FIFO of suspended tasks, the building block of locks, events and queues.
//
// Each entry is a `list_waiter` living in the waiting frame. `signal_first()`
// takes the first entry off the list and wakes its task. A waiter cancelled
// while still on the list leaves it and wakes with `cancelled_error`. A waiter
// cancelled after it was signalled (its wake-up already queued) cannot refuse
// the signal any more: its `lost` hook runs instead, so that the primitive
// passes the signal on (or takes back what it handed over) and no wake-up is
// ever lost.

#include <simul/loop/detail/task_base.hpp>

#include <coroutine>

namespace simul::detail {

class list_waiter;

class wait_list {
 public:
  wait_list() = default;
  wait_list(const wait_list&) = delete;
  wait_list& operator=(const wait_list&) = delete;

  [[nodiscard]] bool empty() const noexcept { return m_head == nullptr; }
  void push_back(list_waiter& w) noexcept;
  void erase(list_waiter& w) noexcept;
  /// Wakes the first waiter; false if there was none.
  bool signal_first() noexcept;
  /// Wakes every waiter.
  void signal_all() noexcept {
    while (signal_first()) {
    }
  }

 private:
  list_waiter* m_head = nullptr;
  list_waiter* m_tail = nullptr;
};

/// One suspended task on a wait_list.
class list_waiter final : public waiter {
 public:
  /// `lost(ctx)` runs when the task is cancelled after being signalled.
  list_waiter(wait_list& list, void (*lost)(void*) noexcept = nullptr, void* ctx = nullptr) noexcept
      : m_list(&list), m_lost(lost), m_ctx(ctx) {}
  /// Moves an awaiter that was not awaited yet (a combinator moving it into
  /// a task of its own); one on a list is never moved.
  list_waiter(list_waiter&& o) noexcept : waiter(o), m_list(o.m_list), m_lost(o.m_lost), m_ctx(o.m_ctx) {}
  list_waiter(const list_waiter&) = delete;
  list_waiter& operator=(const list_waiter&) = delete;
  ~list_waiter() {
    if (m_on_list) {
      m_list->erase(*this);
    }
  }

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    if (!suspend_on(h)) {
      return false;
    }
    m_list->push_back(*this);
    return true;
  }
  void await_resume() {
    if (m_task == nullptr) {
      return; // never suspended
    }
    if (m_signalled) {
      try {
        check_cancel();
      } catch (...) {
        if (m_lost != nullptr) {
          m_lost(m_ctx);
        }
        throw;
      }
    } else {
      check_cancel();
    }
  }
  bool on_cancel() noexcept override {
    if (m_signalled) {
      return false;
    }
    m_list->erase(*this);
    abort_and_wake();
    return true;
  }
  [[nodiscard]] bool signalled() const noexcept { return m_signalled; }

 private:
  friend class wait_list;
  wait_list* m_list;
  void (*m_lost)(void*) noexcept;
  void* m_ctx;
  list_waiter* m_prev = nullptr;
  list_waiter* m_next = nullptr;
  bool m_on_list = false;
  bool m_signalled = false;
};

inline void wait_list::push_back(list_waiter& w) noexcept {
  w.m_prev = m_tail;
  w.m_next = nullptr;
  if (m_tail != nullptr) {
    m_tail->m_next = &w;
  } else {
    m_head = &w;
  }
  m_tail = &w;
  w.m_on_list = true;
}

inline void wait_list::erase(list_waiter& w) noexcept {
  if (!w.m_on_list) {
    return;
  }
  if (w.m_prev != nullptr) {
    w.m_prev->m_next = w.m_next;
  } else {
    m_head = w.m_next;
  }
  if (w.m_next != nullptr) {
    w.m_next->m_prev = w.m_prev;
  } else {
    m_tail = w.m_prev;
  }
  w.m_prev = w.m_next = nullptr;
  w.m_on_list = false;
}

inline bool wait_list::signal_first() noexcept {
  auto* w = m_head;
  if (w == nullptr) {
    return false;
  }
  erase(*w);
  w->m_signalled = true;
  w->wake();
  return true;
}

} // namespace simul::detail
