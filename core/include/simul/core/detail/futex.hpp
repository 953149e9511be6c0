#pragma once

// Blocking on a 32-bit atomic with an optional deadline.
//
// std::atomic::wait has no timed form, and future::wait_for needs one. On Linux
// the futex system call gives both in one primitive; the atomic's own value is
// the futex word, so no mutex or condition variable stands beside it.

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace simul::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t), "the futex word must be a plain 32-bit int");

/// Sleeps while `word` holds `expected`, at most until `deadline` (steady clock).
/// Returns early on a wake-up, a spurious wake-up or a signal: callers re-check.
inline void futex_wait_until(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                             std::chrono::steady_clock::time_point deadline) noexcept {
  const auto* address = reinterpret_cast<const std::uint32_t*>(&word);
  if (deadline == std::chrono::steady_clock::time_point::max()) {
    ::syscall(SYS_futex, address, FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  if (deadline <= now) {
    return;
  }
  const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
  // FUTEX_WAIT takes a relative timeout measured on CLOCK_MONOTONIC, the
  // clock behind std::chrono::steady_clock on Linux.
  timespec relative{};
  relative.tv_sec = static_cast<time_t>(left / 1'000'000'000);
  relative.tv_nsec = static_cast<long>(left % 1'000'000'000);
  ::syscall(SYS_futex, address, FUTEX_WAIT_PRIVATE, expected, &relative, nullptr, 0);
}

/// Wakes up to `count` threads sleeping on `word`.
inline void futex_wake(const std::atomic<std::uint32_t>& word, int count) noexcept {
  const auto* address = reinterpret_cast<const std::uint32_t*>(&word);
  ::syscall(SYS_futex, address, FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0);
}

/// Wakes every thread sleeping on `word`.
inline void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept { futex_wake(word, INT_MAX); }

/// Converts a duration to the steady clock's, rounding up and saturating at
/// the representable range instead of overflowing.
template <class Rep, class Period>
std::chrono::steady_clock::duration saturating_duration(std::chrono::duration<Rep, Period> d) noexcept {
  using target = std::chrono::steady_clock::duration;
  const auto as_double = std::chrono::duration_cast<std::chrono::duration<double>>(d);
  if (as_double >= std::chrono::duration_cast<std::chrono::duration<double>>(target::max())) {
    return target::max();
  }
  if (as_double <= std::chrono::duration_cast<std::chrono::duration<double>>(target::min())) {
    return target::min();
  }
  return std::chrono::ceil<target>(d);
}

/// Converts a timeout into a deadline, saturating instead of overflowing.
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(std::chrono::duration<Rep, Period> timeout) noexcept {
  using clock = std::chrono::steady_clock;
  const auto now = clock::now();
  if (timeout <= std::chrono::duration<Rep, Period>::zero()) {
    return now;
  }
  const auto limit = std::chrono::duration_cast<std::chrono::duration<double>>(clock::time_point::max() - now);
  if (std::chrono::duration_cast<std::chrono::duration<double>>(timeout) >= limit) {
    return clock::time_point::max();
  }
  return now + std::chrono::ceil<clock::duration>(timeout);
}

} // namespace simul::detail
