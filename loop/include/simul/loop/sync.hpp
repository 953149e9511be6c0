#pragma once

// Synchronisation between tasks of one loop: lock, event, condition,
// semaphore, bounded_semaphore, barrier (asyncio.Lock, Event, ...).
//
// These coordinate tasks on one loop thread; they are not thread-safe and
// never block a thread, only suspend tasks. Waiters are served first come,
// first served. Every wait is a cancellation point: a task cancelled while it
// waits leaves the line; a task cancelled just after it was handed the lock
// (or a semaphore slot) hands it on, so nothing is ever lost or held by a
// task that is gone.
//
// Thread-safety: loop thread only. Lifetime: a primitive must outlive the
// tasks waiting on it.

#include <simul/core/error.hpp>
#include <simul/loop/detail/wait_list.hpp>
#include <simul/loop/task.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>

namespace simul {

/// A mutual-exclusion lock for tasks (asyncio.Lock).
///
/// Thread-safety: loop thread only. Lifetime: must outlive its waiters.
class lock {
 public:
  lock() = default;
  lock(const lock&) = delete;
  lock& operator=(const lock&) = delete;

  /// Releases on destruction (`auto g = co_await l.scoped();`).
  class [[nodiscard]] guard {
   public:
    explicit guard(lock* l) noexcept : m_lock(l) {}
    guard(guard&& o) noexcept : m_lock(std::exchange(o.m_lock, nullptr)) {}
    guard& operator=(guard&&) = delete;
    ~guard() {
      if (m_lock != nullptr) {
        m_lock->release();
      }
    }

   private:
    lock* m_lock;
  };

  class acquire_awaiter {
   public:
    explicit acquire_awaiter(lock& l) noexcept : m_lock(&l), m_wait(l.m_waiters, &lock::lost, &l) {}
    bool await_ready() noexcept { return m_lock->try_acquire(); }
    bool await_suspend(std::coroutine_handle<> h) { return m_wait.await_suspend(h); }
    // Ownership came with the signal; a cancellation after it hands it on.
    void await_resume() {
      m_wait.await_resume();
      if (m_wait.signalled()) {
        m_lock->m_handing = false; // this task holds it now
      }
    }

   private:
    lock* m_lock;
    detail::list_waiter m_wait;
  };

  /// Waits until the lock is free and takes it.
  [[nodiscard]] acquire_awaiter acquire() { return acquire_awaiter(*this); }
  /// Takes the lock and returns a guard that releases it.
  task<guard> scoped() {
    co_await acquire();
    co_return guard(this);
  }
  /// Takes the lock if it is free and nobody waits; true if taken.
  bool try_acquire() noexcept {
    if (!m_locked && m_waiters.empty()) {
      m_locked = true;
      return true;
    }
    return false;
  }
  /// Releases the lock, handing it to the first waiter.
  /// Throws `simul::error` if it is not locked.
  void release() {
    if (!m_locked || m_handing) {
      throw error("lock::release: the lock is not acquired");
    }
    hand_on();
  }
  /// True while a task holds the lock. False once it released it, even if
  /// it is promised to a waiter that has not run yet (asyncio.Lock.locked);
  /// a new `acquire()` still queues behind that waiter.
  [[nodiscard]] bool locked() const noexcept { return m_locked && !m_handing; }

 private:
  void hand_on() noexcept {
    // Ownership moves with the signal: nobody can take the lock in between.
    m_handing = m_waiters.signal_first();
    if (!m_handing) {
      m_locked = false;
    }
  }
  static void lost(void* self) noexcept { static_cast<lock*>(self)->hand_on(); }

  detail::wait_list m_waiters;
  bool m_locked = false;
  bool m_handing = false; // released, promised to a signalled waiter
};

/// A flag tasks can wait for (asyncio.Event).
///
/// Thread-safety: loop thread only. Lifetime: must outlive its waiters.
class event {
 public:
  event() = default;
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  class wait_awaiter {
   public:
    explicit wait_awaiter(event& e) noexcept : m_event(&e), m_wait(e.m_waiters) {}
    bool await_ready() const noexcept { return m_event->m_set; }
    bool await_suspend(std::coroutine_handle<> h) { return m_wait.await_suspend(h); }
    void await_resume() { m_wait.await_resume(); }

   private:
    event* m_event;
    detail::list_waiter m_wait;
  };

  /// Sets the flag and wakes every waiter.
  void set() noexcept {
    m_set = true;
    m_waiters.signal_all();
  }
  /// Clears the flag.
  void clear() noexcept { m_set = false; }
  [[nodiscard]] bool is_set() const noexcept { return m_set; }
  /// Waits until the flag is set (at once if it is).
  [[nodiscard]] wait_awaiter wait() { return wait_awaiter(*this); }

 private:
  detail::wait_list m_waiters;
  bool m_set = false;
};

/// A condition variable for tasks (asyncio.Condition), bound to a lock.
///
/// Thread-safety: loop thread only. Lifetime: must outlive its waiters; the
/// lock it was given must outlive it.
class condition {
 public:
  /// A condition with its own lock.
  condition() : m_own(std::make_unique<simul::lock>()), m_lock(m_own.get()) {}
  /// A condition over `l`.
  explicit condition(simul::lock& l) : m_lock(&l) {}
  condition(const condition&) = delete;
  condition& operator=(const condition&) = delete;

  /// The lock.
  [[nodiscard]] simul::lock& get_lock() noexcept { return *m_lock; }
  [[nodiscard]] lock::acquire_awaiter acquire() { return m_lock->acquire(); }
  void release() { m_lock->release(); }
  [[nodiscard]] bool locked() const noexcept { return m_lock->locked(); }

  /// Releases the lock, waits for a notify, re-takes the lock (even when
  /// cancelled, as asyncio does) and returns. Throws `simul::error` if the lock
  /// is not held.
  task<void> wait();
  /// Waits until `pred()` is true; returns its last value.
  template <class P>
  task<bool> wait_for(P pred) {
    while (!pred()) {
      co_await wait();
    }
    co_return true;
  }
  /// Wakes up to `n` waiters. Throws `simul::error` if the lock is not held.
  void notify(std::size_t n = 1);
  /// Wakes every waiter. Throws `simul::error` if the lock is not held.
  void notify_all();

 private:
  static void lost(void* self) noexcept { static_cast<condition*>(self)->m_waiters.signal_first(); }

  std::unique_ptr<simul::lock> m_own;
  simul::lock* m_lock;
  detail::wait_list m_waiters;
};

/// A counter of free slots (asyncio.Semaphore).
///
/// Thread-safety: loop thread only. Lifetime: must outlive its waiters.
class semaphore {
 public:
  /// Throws `simul::error` for a negative value.
  explicit semaphore(long value = 1) : m_value(value) {
    if (value < 0) {
      throw error("semaphore: the initial value must be >= 0");
    }
  }
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;
  virtual ~semaphore() = default;

  class acquire_awaiter {
   public:
    explicit acquire_awaiter(semaphore& s) noexcept : m_sem(&s), m_wait(s.m_waiters, &semaphore::lost, &s) {}
    bool await_ready() noexcept { return m_sem->try_acquire(); }
    bool await_suspend(std::coroutine_handle<> h) { return m_wait.await_suspend(h); }
    void await_resume() {
      m_wait.await_resume();
      if (m_wait.signalled()) {
        m_sem->arrived();
      }
    }

   private:
    semaphore* m_sem;
    detail::list_waiter m_wait;
  };

  /// Waits for a free slot and takes it.
  [[nodiscard]] acquire_awaiter acquire() { return acquire_awaiter(*this); }
  /// Takes a slot if one is free and nobody waits.
  /// Waiters woken with a slot that have not run yet count as waiting: a
  /// task that releases and re-acquires at once queues behind them.
  bool try_acquire() noexcept {
    if (!locked()) {
      --m_value;
      return true;
    }
    return false;
  }
  /// Gives a slot back, to the first waiter if there is one.
  virtual void release() { hand_on(); }
  /// True if `acquire()` would have to wait.
  [[nodiscard]] bool locked() const noexcept { return m_value == 0 || !m_waiters.empty() || m_in_flight > 0; }
  /// The number of free slots.
  [[nodiscard]] long value() const noexcept { return m_value; }

 protected:
  void hand_on() noexcept {
    if (m_waiters.signal_first()) {
      ++m_in_flight;
    } else {
      ++m_value;
    }
  }

 private:
  // A woken waiter took its slot: slots freed meanwhile go to the next
  // waiters, in order (asyncio's acquire does the same on its way out).
  void arrived() noexcept {
    --m_in_flight;
    while (m_value > 0 && m_waiters.signal_first()) {
      --m_value;
      ++m_in_flight;
    }
  }
  static void lost(void* self) noexcept {
    auto* s = static_cast<semaphore*>(self);
    --s->m_in_flight;
    s->hand_on();
  }

  long m_value;
  long m_in_flight = 0; // signalled waiters that have not resumed yet
  detail::wait_list m_waiters;
};

/// A semaphore that refuses to be released above its initial value
/// (asyncio.BoundedSemaphore).
class bounded_semaphore : public semaphore {
 public:
  explicit bounded_semaphore(long value = 1) : semaphore(value), m_bound(value) {}
  /// Throws `simul::error` if it would go above the initial value.
  void release() override {
    if (value() >= m_bound) {
      throw error("bounded_semaphore: released too many times");
    }
    hand_on();
  }

 private:
  long m_bound;
};

/// The barrier was broken (aborted, or reset while tasks waited) (asyncio.BrokenBarrierError).
class broken_barrier_error : public error {
 public:
  explicit broken_barrier_error(const std::string& message = "the barrier is broken") : error(message) {}
};

/// Lets `parties` tasks wait until all of them arrived (asyncio.Barrier).
///
/// Thread-safety: loop thread only. Lifetime: must outlive its waiters.
class barrier {
 public:
  /// Throws `simul::error` if `parties` is 0.
  explicit barrier(std::size_t parties) : m_parties(parties) {
    if (parties == 0) {
      throw error("barrier: parties must be > 0");
    }
  }
  barrier(const barrier&) = delete;
  barrier& operator=(const barrier&) = delete;

  /// Waits until `parties` tasks are waiting; returns this task's arrival
  /// index (0 .. parties-1). Throws `broken_barrier_error` if the barrier
  /// breaks; a cancelled waiter leaves the count.
  task<std::size_t> wait();
  /// Breaks the barrier: current and future waiters get `broken_barrier_error`,
  /// and so do tasks a completed round released that have not run yet.
  /// `n_waiting()` is 0 afterwards.
  void abort() noexcept;
  /// Back to the empty state; tasks waiting now get `broken_barrier_error`.
  void reset() noexcept;
  [[nodiscard]] std::size_t parties() const noexcept { return m_parties; }
  [[nodiscard]] std::size_t n_waiting() const noexcept { return m_count; }
  [[nodiscard]] bool broken() const noexcept { return m_broken; }

 private:
  std::size_t m_parties;
  std::size_t m_count = 0;
  std::size_t m_generation = 0;
  detail::wait_list m_waiters;
  bool m_broken = false;
  std::size_t m_broken_generation = static_cast<std::size_t>(-1);
};

} // namespace simul
