#pragma once

// The submitters' side of a process pool (private): the queue of tasks not
// yet sent, the pool's flags and counters, the wake-up of the I/O loop, and
// the idle workers the loop offers while it sleeps.
//
// Thread-safety: every member function may be called from any thread; one
// mutex guards the queue, the flags, the counters and the offers. Promises
// are completed with no lock held (a continuation may submit).
// Lifetime: owned by the pool's I/O loop (io_loop.hpp), which outlives every
// call into it.

#include "protocol.hpp"

#include <simul/procpool/detail/task.hpp>
#include <simul/procpool/options.hpp>
#include <simul/procpool/process_pool.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

namespace simul::detail::procpool {

using pool_clock = std::chrono::steady_clock;

inline constexpr std::size_t k_direct_bytes = 64 * 1024; ///< bigger tasks never go straight to an offered worker

/// A task waiting in the queue.
struct queued {
  std::uint64_t id = 0;
  task_request request;
};

/// A task on its way to a worker or in a worker's hands. The request (payload
/// included) is kept until it is answered, so a task queued behind a crash
/// can be sent again.
struct running {
  std::uint64_t id = 0;
  task_request request;
  std::chrono::nanoseconds timeout{0}; ///< resolved: the task's own or the pool's default
  pool_clock::time_point deadline = pool_clock::time_point::max();
  pool_clock::time_point started{}; ///< when it reached the front of its worker's line
};

/// "task 7 (the callable's type)", for error messages.
std::string describe_task(const running& task);

/// An idle worker offered to submitters while the I/O loop sleeps: a
/// submitter that finds the queue empty writes its task straight to the
/// worker's socket (through `send_tasks`, the one send path) instead of
/// waking the loop. Offers exist only between `offer` and `reclaim`, around
/// the loop's epoll_wait, so whenever the loop is awake it owns every worker.
struct offer {
  std::uint64_t worker = 0;
  int fd = -1;
  bool taken = false;       ///< a submitter used it (or tried to)
  bool send_failed = false; ///< the write failed: the task went to the queue
  running task;             ///< what was sent, if taken and sent
};

/// What the I/O loop needs to know of the flags, read together.
struct queue_status {
  bool stopping = false;
  bool destroying = false;
  bool empty = true;
  bool broken = false;
};

class task_queue {
 public:
  explicit task_queue(std::chrono::nanoseconds default_timeout);
  task_queue(const task_queue&) = delete;
  task_queue& operator=(const task_queue&) = delete;

  // ------------------------------------------------ submitters and owners

  /// Queues a task (or writes it to an offered idle worker) and wakes the
  /// loop. Throws broken_executor after shutdown or once the pool broke.
  void push(task_request&& request);
  /// Stops accepting; cancels what is queued if `cancel_pending`.
  void stop(bool cancel_pending);
  /// As stop(true), for the destructor: the loop stops running tasks too.
  void destroy();
  /// Blocks until the loop has finished (mark_done).
  void wait_until_done();
  [[nodiscard]] bool is_shutdown() const noexcept;
  [[nodiscard]] process_pool_stats stats() const;
  [[nodiscard]] std::vector<int> pids() const;

  // ------------------------------------------------ the I/O loop

  [[nodiscard]] int wake_fd() const noexcept { return m_wake.get(); }
  /// The loop saw the wake descriptor readable: drains it, re-arms the flag.
  void woken() noexcept;
  [[nodiscard]] queue_status status() const;
  /// Up to `n` tasks from the front.
  std::deque<queued> take(std::size_t n);
  /// Everything queued (the loop is ending).
  std::deque<queued> take_all();
  /// Puts tasks back first in line, in their order.
  void put_back(std::deque<queued>&& tasks);
  /// A task taken from the queue, as it is sent (its timeout resolved).
  [[nodiscard]] running to_running(queued&& task) const;
  /// Breaks the pool: no more submits; what is queued fails with
  /// broken_executor(message, cause). The first break wins.
  void break_pool(std::exception_ptr cause, const std::string& message);
  /// The error a task gets once the pool is broken.
  [[nodiscard]] std::exception_ptr broken_error() const;
  void note_spawned();
  void note_crashed();
  void note_timed_out();
  void note_recycled();
  /// A task completed (an atomic: submitters hold the lock most of the time in a burst).
  void note_completed() noexcept { m_completed.fetch_add(1, std::memory_order_release); }
  void set_pids(std::vector<int> pids);
  /// The loop has ended: wakes wait_until_done().
  void mark_done();
  /// Offers idle workers to submitters (only while accepting, not broken and
  /// the queue is empty). True if they were taken on offer.
  bool offer_workers(std::vector<offer>&& offers);
  /// Takes the offers back, with what submitters did with them.
  std::vector<offer> reclaim();

 private:
  void wake() noexcept;
  bool send_to_offer(task_request& request, std::uint64_t id);

  std::chrono::nanoseconds m_default_timeout;
  unique_fd m_wake; ///< eventfd the loop sleeps on
  std::atomic<bool> m_wake_pending{false};
  std::atomic<std::uint64_t> m_completed{0}; ///< stats().completed, kept outside the lock

  mutable std::mutex m_mutex;
  std::condition_variable m_done_cv;
  std::deque<queued> m_queue;
  std::uint64_t m_next_task = 1;
  bool m_accepting = true;
  bool m_stopping = false;
  bool m_destroying = false;
  bool m_loop_done = false;
  std::exception_ptr m_broken;
  std::string m_broken_message;
  process_pool_stats m_stats;
  std::vector<int> m_pids;
  std::vector<offer> m_offers;
};

} // namespace simul::detail::procpool
