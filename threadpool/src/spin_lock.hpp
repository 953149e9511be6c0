#pragma once

// The lock around each of the pool's queues.
//
// Every critical section it guards is short (one push, one pop, or a batch of
// at most 255 moves), so a waiter is better off spinning for it than
// sleeping: a std::mutex that finds its owner busy sleeps in a futex,
// and the owner then pays a second system call to wake it, which on a
// virtual machine costs more than the whole critical section many times over.
// A waiter spins with `pause` for a short while and then yields the CPU, so an
// owner that lost its CPU in the middle gets it back instead of being spun
// against. Meets Lockable, for std::lock_guard and std::unique_lock.

#include <simul/core/detail/spin.hpp>

#include <atomic>

#include <sched.h>

namespace simul::detail {

class spin_lock {
 public:
  void lock() noexcept {
    while (m_locked.exchange(true, std::memory_order_acquire)) {
      wait_until_free();
    }
  }

  bool try_lock() noexcept {
    return !m_locked.load(std::memory_order_relaxed) && !m_locked.exchange(true, std::memory_order_acquire);
  }

  void unlock() noexcept { m_locked.store(false, std::memory_order_release); }

 private:
  static constexpr int k_spins = 64;

  void wait_until_free() const noexcept {
    for (int i = 0; m_locked.load(std::memory_order_relaxed); ++i) {
      if (i < k_spins) {
        cpu_relax();
      } else {
        ::sched_yield();
      }
    }
  }

  std::atomic<bool> m_locked{false};
};

} // namespace simul::detail
