#pragma once

// queue<T>, priority_queue<T>, lifo_queue<T>: queues between tasks of one
// loop (asyncio.Queue, PriorityQueue, LifoQueue).
//
// `queue<int> q(maxsize)` (0: unbounded). `co_await q.put(x)` waits while the
// queue is full; `co_await q.get()` waits while it is empty; the `_nowait`
// forms throw `queue_full` / `queue_empty` instead. `task_done()` and
// `co_await join()` count finished items. `shutdown()` makes `put` throw
// `queue_shutdown` and `get` throw it once the queue is empty;
// `shutdown(true)` also drops what is queued. A waiting task cancelled just
// after it was woken passes the wake-up on, so no item is stranded.
//
// Thread-safety: loop thread only. Lifetime: must outlive the tasks waiting
// on it.

#include <simul/core/error.hpp>
#include <simul/loop/detail/wait_list.hpp>
#include <simul/loop/sync.hpp>
#include <simul/loop/task.hpp>

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
#include <utility>
#include <vector>

namespace simul {

/// put_nowait on a full queue (asyncio.QueueFull).
class queue_full : public error {
 public:
  queue_full() : error("queue is full") {}
};
/// get_nowait on an empty queue (asyncio.QueueEmpty).
class queue_empty : public error {
 public:
  queue_empty() : error("queue is empty") {}
};
/// The queue was shut down (asyncio.QueueShutDown).
class queue_shutdown : public error {
 public:
  queue_shutdown() : error("queue is shut down") {}
};

namespace detail {

/// FIFO storage.
template <class T>
struct fifo_store {
  std::deque<T> items;
  void push(T v) { items.push_back(std::move(v)); }
  T pop() {
    T v = std::move(items.front());
    items.pop_front();
    return v;
  }
  [[nodiscard]] std::size_t size() const noexcept { return items.size(); }
  void clear() { items.clear(); }
};

/// LIFO storage.
template <class T>
struct lifo_store {
  std::vector<T> items;
  void push(T v) { items.push_back(std::move(v)); }
  T pop() {
    T v = std::move(items.back());
    items.pop_back();
    return v;
  }
  [[nodiscard]] std::size_t size() const noexcept { return items.size(); }
  void clear() { items.clear(); }
};

/// Smallest first (a min-heap on Compare, std::less by default).
template <class T, class Compare>
struct heap_store {
  std::vector<T> items;
  Compare less;
  void push(T v) {
    items.push_back(std::move(v));
    std::push_heap(items.begin(), items.end(), [this](const T& a, const T& b) { return less(b, a); });
  }
  T pop() {
    std::pop_heap(items.begin(), items.end(), [this](const T& a, const T& b) { return less(b, a); });
    T v = std::move(items.back());
    items.pop_back();
    return v;
  }
  [[nodiscard]] std::size_t size() const noexcept { return items.size(); }
  void clear() { items.clear(); }
};

template <class T, class Store>
class basic_queue {
 public:
  /// `maxsize` 0 means unbounded.
  explicit basic_queue(std::size_t maxsize = 0) : m_maxsize(maxsize) {}
  basic_queue(const basic_queue&) = delete;
  basic_queue& operator=(const basic_queue&) = delete;

  [[nodiscard]] std::size_t qsize() const noexcept { return m_store.size(); }
  [[nodiscard]] std::size_t maxsize() const noexcept { return m_maxsize; }
  [[nodiscard]] bool empty() const noexcept { return m_store.size() == 0; }
  [[nodiscard]] bool full() const noexcept { return m_maxsize > 0 && m_store.size() >= m_maxsize; }

  /// Waits while the queue is full, then puts `item`. Throws `queue_shutdown`.
  task<void> put(T item) {
    while (full()) {
      if (m_shutdown) {
        throw queue_shutdown();
      }
      co_await list_waiter(m_putters, &basic_queue::pass_putter, this);
    }
    put_nowait(std::move(item));
  }

  /// Puts `item` now. Throws `queue_full` or `queue_shutdown`.
  void put_nowait(T item) {
    if (m_shutdown) {
      throw queue_shutdown();
    }
    if (full()) {
      throw queue_full();
    }
    m_store.push(std::move(item));
    ++m_unfinished;
    m_finished.clear();
    m_getters.signal_first();
  }

  /// Waits while the queue is empty, then takes an item. Throws
  /// `queue_shutdown` once the queue is shut down and empty.
  task<T> get() {
    while (empty()) {
      if (m_shutdown) {
        throw queue_shutdown();
      }
      co_await list_waiter(m_getters, &basic_queue::pass_getter, this);
    }
    co_return get_nowait();
  }

  /// Takes an item now. Throws `queue_empty`, or `queue_shutdown` if shut down and empty.
  T get_nowait() {
    if (empty()) {
      if (m_shutdown) {
        throw queue_shutdown();
      }
      throw queue_empty();
    }
    T v = m_store.pop();
    m_putters.signal_first();
    return v;
  }

  /// One item taken earlier is fully processed. Throws `simul::error` if
  /// called more times than items were put.
  void task_done() {
    if (m_unfinished == 0) {
      throw error("queue::task_done called too many times");
    }
    if (--m_unfinished == 0) {
      m_finished.set();
    }
  }

  /// Waits until every item put has been marked with task_done().
  task<void> join() {
    if (m_unfinished > 0) {
      co_await m_finished.wait();
    }
  }

  /// Shuts the queue down: `put` throws `queue_shutdown` from now on, `get`
  /// once the queue is empty; every waiter wakes. With `immediate`, the
  /// queued items are dropped (and counted as done for `join`).
  void shutdown(bool immediate = false) {
    m_shutdown = true;
    if (immediate) {
      while (!empty()) {
        (void)m_store.pop();
        if (m_unfinished > 0) {
          --m_unfinished;
        }
      }
      if (m_unfinished == 0) {
        m_finished.set();
      }
    }
    m_getters.signal_all();
    m_putters.signal_all();
  }
  [[nodiscard]] bool is_shutdown() const noexcept { return m_shutdown; }

 private:
  static void pass_getter(void* self) noexcept {
    auto* q = static_cast<basic_queue*>(self);
    if (!q->empty() || q->m_shutdown) {
      q->m_getters.signal_first();
    }
  }
  static void pass_putter(void* self) noexcept {
    auto* q = static_cast<basic_queue*>(self);
    if (!q->full() || q->m_shutdown) {
      q->m_putters.signal_first();
    }
  }

  Store m_store;
  std::size_t m_maxsize;
  std::size_t m_unfinished = 0;
  wait_list m_getters;
  wait_list m_putters;
  event m_finished;
  bool m_shutdown = false;
};

} // namespace detail

/// First in, first out (asyncio.Queue). See the file comment.
template <class T>
class queue : public detail::basic_queue<T, detail::fifo_store<T>> {
 public:
  using detail::basic_queue<T, detail::fifo_store<T>>::basic_queue;
};

/// Smallest item first, by `Compare` (asyncio.PriorityQueue).
template <class T, class Compare = std::less<T>>
class priority_queue : public detail::basic_queue<T, detail::heap_store<T, Compare>> {
 public:
  using detail::basic_queue<T, detail::heap_store<T, Compare>>::basic_queue;
};

/// Last in, first out (asyncio.LifoQueue).
template <class T>
class lifo_queue : public detail::basic_queue<T, detail::lifo_store<T>> {
 public:
  using detail::basic_queue<T, detail::lifo_store<T>>::basic_queue;
};

} // namespace simul
