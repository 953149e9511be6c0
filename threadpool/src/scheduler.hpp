#pragma once

// The machinery behind simul::thread_pool: workers, queues, sleeping and
// accounting. Private to the module.
//
// Queues. Each worker owns a deque (a ring under its own spin lock, see
// spin_lock.hpp): its own submissions go to the back and it takes from the
// back; thieves take from the front. Other threads push to injection lanes,
// one ring each under its own lock, about one lane per core: a thread always
// uses the same lane, and the first threads to submit get a lane each, so
// submitting threads do not queue for one lock (with one shared queue, two
// submitters and the workers draining it spent their time waiting for each
// other). Workers visit the lanes in turn and move tasks in batches (a fair
// share, at most 256) into their deques, so that a lane's lock is taken once
// per batch, not once per task. One thread's submissions keep their order;
// tasks from different threads have none. Every ring also publishes an
// approximate size, so a worker looking for work skips empty queues without
// taking their locks.
//
// Sleeping. A worker that finds nothing spins briefly (see Spinning), then
// registers as a sleeper, reads the wake epoch, looks once more through every
// queue under its lock, and sleeps on the epoch futex. A producer pushes
// under the queue's lock and then, if anyone is registered and no worker
// spins, bumps the epoch and wakes one worker. The queue lock orders the two
// sides: either the worker's final look sees the task, or the producer sees
// the registration and the worker's futex wait sees the new epoch. A worker
// that takes a task while more are queued wakes the next sleeper, so
// wake-ups spread along a chain.
//
// A "notified" flag keeps producers from paying a system call per task while
// a worker sleeps: a producer wakes only if it flips the flag from false to
// true, and every worker clears it (an exchange) after registering and
// before its last look. Either the clearing exchange comes after the
// producer's in the flag's order, and then the worker's last look sees the
// producer's task, or it comes before, and then the producer flips the flag
// itself and wakes someone; a producer that finds the flag set relies on the
// wake-up already on its way, whose worker has not yet looked. That worker
// clears the flag again when it stops being a sleeper (woken, or finding work
// in its last look), and whoever takes a task while others sleep and work is
// still queued wakes one of them without consulting the flag
// (`pass_on_wake_up`): a wake-up "on its way" may have been used up by
// another worker, and queued work must never wait for it.
//
// Spinning. At most one worker at a time spins for work before sleeping; the
// others register as sleepers at once. While one spins, producers make no
// wake-up call: the spinner is counted before its first look and uncounted
// only after its last, so it looks at the queues again after any push whose
// producer saw it counted. If that look finds the new task, or finds another
// one and leaves work queued, the spinner passes a wake-up on; if it finds
// nothing, it goes through the registration and last look above. Queue sizes
// are published with sequentially consistent stores and read so by
// `pass_on_wake_up`, which makes "the producer saw the spinner" and "the
// spinner saw the size" the only two outcomes. Extra spinners only take CPU
// from the threads that submit, on a machine with few cores.
//
// Shutting down. m_stopping turns producers away: each reads it under the
// lock of the queue it pushes to. Shutdown sets it, then takes every lane's
// lock once (`close_lanes`) and sets m_lanes_closed: from then on no outside
// push can land, and one that landed before is in a lane. A worker exits only
// after a last look that began with the lanes closed and found nothing, so no
// accepted task is left behind. (Checking m_stopping instead would let a push
// slip in between that look and the check.) A worker's own deque cannot gain
// work once m_stopping is set, and the worker empties it before it exits.
//
// Idleness. Each worker counts the tasks it accepted from inside tasks and the
// tasks it finished; outside submissions are counted under their lane's
// lock. `wait_idle` reads "finished" before "submitted": since a task is
// counted as submitted before it can be taken, equal sums mean nothing was in
// flight at the moment "finished" was read.

#include "spin_lock.hpp"
#include "task_ring.hpp"

#include <simul/core/error.hpp>
#include <simul/core/executor.hpp>
#include <simul/threadpool/thread_pool.hpp>

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace simul::detail {

class scheduler;

/// A counter written by one thread and read by any.
struct owned_counter {
  std::atomic<std::uint64_t> value{0};
  void bump() noexcept { value.store(value.load(std::memory_order_relaxed) + 1, std::memory_order_release); }
  [[nodiscard]] std::uint64_t get() const noexcept { return value.load(std::memory_order_acquire); }
};

struct alignas(64) worker_state final : cooperative_waiter {
  worker_state(scheduler& owner, std::size_t position) : pool(owner), index(position) {}

  /// Runs one queued task of the pool while a task on this thread waits.
  bool run_one() override;

  scheduler& pool;
  std::size_t index;
  std::thread thread;

  spin_lock lock;
  task_ring deque;
  std::atomic<std::size_t> approx_size{0};
  // Tasks this worker took from a lane and has not yet pushed to its deque:
  // counted as queued by stats() meanwhile. Written only by this worker.
  std::atomic<std::size_t> in_transit{0};

  // Written only by this worker's thread.
  owned_counter submitted; // tasks pushed to this deque from inside tasks
  owned_counter finished;  // tasks this worker ran or dropped, whatever the outcome
  owned_counter completed;
  owned_counter failed;
  owned_counter cancelled;
  owned_counter stolen;
  std::atomic<std::uint32_t> running{0};
  std::size_t next_victim = 0;
  std::size_t next_lane = 0;
};

/// One of the queues that threads outside the pool push to (see Queues).
struct alignas(64) injection_lane {
  spin_lock lock;
  task_ring ring;
  std::atomic<std::size_t> approx_size{0};
  owned_counter submitted; // written under `lock`
};

class scheduler {
 public:
  explicit scheduler(thread_pool_options options);
  ~scheduler();
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  void start();
  void enqueue(pool_task&& task);
  void wait_idle();
  void shutdown(shutdown_options options);
  void join_all();
  [[nodiscard]] bool is_shutdown() const noexcept { return m_stopping.load(std::memory_order_acquire); }
  void set_exception_handler(std::function<void(std::exception_ptr)> handler);
  [[nodiscard]] thread_pool_stats stats() const;
  [[nodiscard]] std::size_t workers() const noexcept { return m_workers.size(); }
  [[nodiscard]] const std::string& name() const noexcept { return m_name; }
  [[nodiscard]] bool on_worker_thread() const noexcept;

  bool find_task(worker_state& self, pool_task& out, bool thorough);
  void run_task(worker_state& self, pool_task& task);

 private:
  void worker_main(worker_state& self);
  [[nodiscard]] injection_lane& lane_of_this_thread() noexcept;
  /// Makes every later push see m_stopping: each lane's lock is taken once.
  void close_lanes() noexcept;
  bool take_from_injection(worker_state& self, pool_task& out, bool thorough);
  // Not inlined: its batch buffer is 16 KiB of stack, and a task that waits
  // runs other tasks from inside find_task's callers, nesting them.
  [[gnu::noinline]] bool take_from_lane(worker_state& self, injection_lane& lane, pool_task& out);
  /// Looks for work for a while before sleeping; false at once if enough others do.
  bool spin_for_task(worker_state& self, pool_task& out);
  bool steal(worker_state& self, pool_task& out, bool thorough);
  void notify_one() noexcept;
  /// After taking a task: wakes a sleeper if more work is still queued anywhere.
  void pass_on_wake_up() noexcept;
  void notify_all() noexcept;
  void notify_idle_waiters() noexcept;
  [[nodiscard]] bool idle() const noexcept;
  void report(std::exception_ptr error) noexcept;
  void break_pool(std::exception_ptr cause);
  void drain_all(task_action action, const std::exception_ptr* reason);
  [[noreturn]] void throw_not_accepting();

  std::string m_name;
  std::function<void()> m_initializer;

  mutable std::mutex m_handler_lock;
  std::function<void(std::exception_ptr)> m_handler;

  // Fixed at construction; a thread outside the pool always pushes to the same one.
  std::vector<std::unique_ptr<injection_lane>> m_lanes;

  alignas(64) std::atomic<bool> m_stopping{false};
  // Set once every lane has been locked after m_stopping: no push can land any more.
  std::atomic<bool> m_lanes_closed{false};
  std::atomic<bool> m_cancel_all{false};
  mutable std::mutex m_broken_lock;
  std::optional<broken_executor> m_broken; // under m_broken_lock

  alignas(64) std::atomic<std::uint32_t> m_sleepers{0};
  std::atomic<std::uint32_t> m_epoch{0};
  // A wake-up is on its way and no worker has looked at the queues since:
  // producers skip the system call while it is set.
  std::atomic<bool> m_notified{false};
  // Workers spinning for work before they sleep (at most k_max_spinners).
  std::atomic<std::uint32_t> m_spinning{0};
  alignas(64) std::atomic<std::uint32_t> m_idle_waiters{0};
  std::atomic<std::uint32_t> m_idle_epoch{0};

  // Tasks dropped by threads that are not workers (shutdown with cancel_pending).
  std::atomic<std::uint64_t> m_outside_finished{0};
  std::atomic<std::uint64_t> m_outside_cancelled{0};

  std::vector<std::unique_ptr<worker_state>> m_workers;
  std::mutex m_join_lock;
};

} // namespace simul::detail
