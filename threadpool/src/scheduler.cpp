#include "scheduler.hpp"

#include <simul/core/detail/futex.hpp>
#include <simul/core/detail/shared_state.hpp>
#include <simul/trace/detail/recorder.hpp>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <typeinfo>

#include <pthread.h>
#include <unistd.h>

namespace simul::detail {

namespace {

thread_local worker_state* t_worker = nullptr;

// Which injection lane a thread outside the pool pushes to: threads are
// numbered in the order they first submit to any pool, so that the first
// submitting threads each get a lane of their own.
std::atomic<std::size_t> g_next_lane_ticket{0};
thread_local std::size_t t_lane_ticket = SIZE_MAX;

// How many tasks a worker moves from an injection lane in one go, when that
// many are queued: a take is never more than a fair share (what is queued,
// divided among the workers), so long tasks still spread, and whatever lands
// in a deque can be stolen. With one submitter racing several workers, every
// take is one more chance to find the lane's lock held and yield the CPU;
// with 32, 4 workers on 2 cores ran tiny tasks ~20% slower than 1 worker did.
constexpr std::size_t k_max_batch = 256;
// Rounds of looking for work before a worker sleeps; each round pauses a
// little, and the last ones yield the core to other threads.
constexpr int k_spin_rounds = 64;
constexpr int k_yield_rounds = 8;
// Workers that may spin at once; the others go straight to sleep.
constexpr std::uint32_t k_max_spinners = 1;
// Injection lanes: one per core, within these bounds.
constexpr std::size_t k_min_lanes = 2;
constexpr std::size_t k_max_lanes = 16;

} // namespace

bool worker_state::run_one() {
  pool_task task;
  if (!pool.find_task(*this, task, false)) {
    return false;
  }
  pool.run_task(*this, task);
  return true;
}

scheduler::scheduler(thread_pool_options options)
    : m_name(std::move(options.name)), m_initializer(std::move(options.initializer)),
      m_handler(std::move(options.exception_handler)) {
  auto threads = options.workers != 0 ? options.workers : options.threads; // `threads`: the old name
  if (threads == 0) {
    threads = std::max(1U, std::thread::hardware_concurrency());
  }
  const auto lanes = std::clamp<std::size_t>(std::thread::hardware_concurrency(), k_min_lanes, k_max_lanes);
  m_lanes.reserve(lanes);
  for (std::size_t i = 0; i < lanes; ++i) {
    m_lanes.push_back(std::make_unique<injection_lane>());
  }
  m_workers.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) {
    m_workers.push_back(std::make_unique<worker_state>(*this, i));
    m_workers.back()->next_lane = i % lanes;
  }
}

scheduler::~scheduler() = default;

void scheduler::start() {
  try {
    for (auto& worker : m_workers) {
      auto* self = worker.get();
      worker->thread = std::thread([this, self] { worker_main(*self); });
      const auto label = (m_name + "-" + std::to_string(self->index)).substr(0, 15);
      ::pthread_setname_np(worker->thread.native_handle(), label.c_str());
    }
  } catch (...) {
    shutdown({.wait = false, .cancel_pending = true});
    join_all();
    throw;
  }
}

bool scheduler::on_worker_thread() const noexcept { return t_worker != nullptr && &t_worker->pool == this; }

void scheduler::worker_main(worker_state& self) {
  t_worker = &self;
  scoped_cooperative_waiter helper(&self);
  if (m_initializer) {
    try {
      m_initializer();
    } catch (...) {
      break_pool(std::current_exception());
      notify_idle_waiters();
      return;
    }
  }
  pool_task task;
  for (;;) {
    if (find_task(self, task, false)) {
      pass_on_wake_up();
      run_task(self, task);
      continue;
    }
    notify_idle_waiters();
    if (spin_for_task(self, task)) {
      pass_on_wake_up();
      run_task(self, task);
      continue;
    }
    // Register, then look under every lock once more (see scheduler.hpp).
    m_sleepers.fetch_add(1, std::memory_order_seq_cst);
    const auto epoch = m_epoch.load(std::memory_order_seq_cst);
    // Read after the epoch: a shutdown closes the lanes before it bumps the
    // epoch, so either this reads true or the sleep below returns at once.
    // And read before the last look: once the lanes are closed, nothing can
    // be pushed that the look would miss.
    const bool closed = m_lanes_closed.load(std::memory_order_seq_cst);
    // Take the pending notification, if any, before the last look: from here
    // on, a producer that finds none pending wakes someone (see scheduler.hpp).
    m_notified.exchange(false, std::memory_order_seq_cst);
    if (find_task(self, task, true)) {
      m_sleepers.fetch_sub(1, std::memory_order_seq_cst);
      // A producer may have counted this worker as asleep and set the flag
      // for it; it will not sleep now, so the flag must not stay set.
      m_notified.store(false, std::memory_order_seq_cst);
      pass_on_wake_up();
      run_task(self, task);
      continue;
    }
    if (closed) {
      m_sleepers.fetch_sub(1, std::memory_order_seq_cst);
      break;
    }
    notify_idle_waiters();
    futex_wait_until(m_epoch, epoch, std::chrono::steady_clock::time_point::max());
    m_sleepers.fetch_sub(1, std::memory_order_seq_cst);
    // This worker was the wake-up on its way: clear the flag before looking,
    // so that the next producer (or this worker, finding more queued work)
    // wakes another sleeper. Left set, it would stop the wake-up chain and
    // leave one worker running a burst of submissions alone.
    m_notified.store(false, std::memory_order_seq_cst);
  }
  notify_idle_waiters();
}

bool scheduler::spin_for_task(worker_state& self, pool_task& out) {
  // Counted before the first look and uncounted after the last one, so that a
  // producer who saw the count knows this worker looks again (scheduler.hpp).
  if (m_spinning.fetch_add(1, std::memory_order_seq_cst) >= k_max_spinners) {
    m_spinning.fetch_sub(1, std::memory_order_seq_cst);
    return false;
  }
  bool found = false;
  for (int round = 0; round < k_spin_rounds + k_yield_rounds && !found; ++round) {
    if (round < k_spin_rounds) {
      for (int i = 0; i < 16; ++i) {
        cpu_relax();
      }
    } else {
      std::this_thread::yield();
    }
    found = find_task(self, out, false);
  }
  m_spinning.fetch_sub(1, std::memory_order_seq_cst);
  return found;
}

bool scheduler::find_task(worker_state& self, pool_task& out, bool thorough) {
  if (thorough || self.approx_size.load(std::memory_order_relaxed) > 0) {
    std::lock_guard guard(self.lock);
    if (!self.deque.empty()) {
      out = self.deque.pop_back();
      self.approx_size.store(self.deque.size(), std::memory_order_relaxed);
      return true;
    }
  }
  return take_from_injection(self, out, thorough) || steal(self, out, thorough);
}

injection_lane& scheduler::lane_of_this_thread() noexcept {
  if (t_lane_ticket == SIZE_MAX) {
    t_lane_ticket = g_next_lane_ticket.fetch_add(1, std::memory_order_relaxed);
  }
  return *m_lanes[t_lane_ticket % m_lanes.size()];
}

void scheduler::close_lanes() noexcept {
  for (auto& lane : m_lanes) {
    // A push that takes this lock after us sees m_stopping; one that took it
    // before has its task in the lane, where workers and draining find it.
    std::lock_guard guard(lane->lock);
  }
  m_lanes_closed.store(true, std::memory_order_seq_cst);
}

bool scheduler::take_from_injection(worker_state& self, pool_task& out, bool thorough) {
  // Round robin, from a different lane for each worker at first: no lane
  // waits behind a busier one, and workers spread over the submitting threads.
  const auto lanes = m_lanes.size();
  for (std::size_t k = 0; k < lanes; ++k) {
    const auto index = (self.next_lane + k) % lanes;
    auto& lane = *m_lanes[index];
    if (!thorough && lane.approx_size.load(std::memory_order_relaxed) == 0) {
      continue;
    }
    if (take_from_lane(self, lane, out)) {
      self.next_lane = index + 1;
      return true;
    }
  }
  return false;
}

bool scheduler::take_from_lane(worker_state& self, injection_lane& lane, pool_task& out) {
  // Raw storage: only the slots a take fills are constructed, and a take is
  // often of one task.
  alignas(pool_task) unsigned char storage[(k_max_batch - 1) * sizeof(pool_task)];
  auto* const batch = reinterpret_cast<pool_task*>(storage);
  std::size_t taken = 0;
  std::size_t left = 0;
  {
    std::lock_guard guard(lane.lock);
    const auto available = lane.ring.size();
    if (available == 0) {
      return false;
    }
    // Take a fair share: about what each worker would get, at most a batch.
    const auto share = std::min({k_max_batch, available / m_workers.size() + 1, available});
    out = lane.ring.pop_front();
    for (taken = 0; taken + 1 < share; ++taken) {
      ::new (static_cast<void*>(batch + taken)) pool_task(lane.ring.pop_front());
    }
    left = lane.ring.size();
    if (taken > 0) {
      // Before the lane's size drops: stats() reads the lanes first and then
      // each worker's in_transit and deque, so it never misses the batch.
      self.in_transit.store(taken, std::memory_order_seq_cst);
    }
    lane.approx_size.store(left, std::memory_order_seq_cst);
  }
  if (taken > 0) {
    std::lock_guard guard(self.lock);
    // Newest-first popping from the back must still give outside work in
    // submission order: push the batch reversed.
    for (auto i = taken; i > 0; --i) {
      auto* task = std::launder(batch + (i - 1));
      self.deque.push_back(std::move(*task));
      task->~pool_task();
    }
    self.approx_size.store(self.deque.size(), std::memory_order_seq_cst);
    self.in_transit.store(0, std::memory_order_seq_cst);
  }
  if (left > 0 || taken > 0) {
    notify_one();
  }
  return true;
}

bool scheduler::steal(worker_state& self, pool_task& out, bool thorough) {
  const auto count = m_workers.size();
  if (count < 2) {
    return false;
  }
  // Visit every other worker exactly once, starting with the last one robbed:
  // the others are self.index + 1 + (0 .. count - 2), taken modulo count.
  // (A thorough look that skipped one of them could put this worker to sleep
  // beside a deque that still holds work.)
  for (std::size_t k = 0; k + 1 < count; ++k) {
    const auto other = (self.next_victim + k) % (count - 1);
    auto& victim = *m_workers[(self.index + 1 + other) % count];
    if (!thorough && victim.approx_size.load(std::memory_order_relaxed) == 0) {
      continue;
    }
    std::unique_lock guard(victim.lock, std::defer_lock);
    if (thorough) {
      guard.lock();
    } else if (!guard.try_lock()) {
      continue;
    }
    if (!victim.deque.empty()) {
      out = victim.deque.pop_front();
      victim.approx_size.store(victim.deque.size(), std::memory_order_relaxed);
      self.next_victim = other;
      self.stolen.bump();
      return true;
    }
  }
  return false;
}

void scheduler::run_task(worker_state& self, pool_task& task) {
  // Only this thread writes its counters: plain stores, no locked instructions.
  self.running.store(self.running.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  task_outcome outcome;
  const auto action = m_cancel_all.load(std::memory_order_relaxed) ? task_action::cancel : task_action::run;
  try {
    const detail::trace_run_scope trace_slice("task");
    outcome = task(action, nullptr);
  } catch (...) {
    outcome = task_outcome::failed;
    report(std::current_exception());
  }
  // Free the closure before counting it finished: when wait_idle returns,
  // whatever the tasks captured is gone.
  task.reset();
  self.running.store(self.running.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  switch (outcome) {
  case task_outcome::completed:
    self.completed.bump();
    break;
  case task_outcome::failed:
    self.failed.bump();
    break;
  case task_outcome::cancelled:
    self.cancelled.bump();
    break;
  }
  self.finished.bump();
}

void scheduler::enqueue(pool_task&& task) {
  // Under the queue's lock, so that a shutdown's close_lanes (for a lane) or
  // the worker's own last look (for its deque) orders the push (scheduler.hpp).
  auto push = [&task, this](spin_lock& lock, task_ring& ring, std::atomic<std::size_t>& size,
                            owned_counter& submitted) {
    std::lock_guard guard(lock);
    if (m_stopping.load(std::memory_order_seq_cst)) {
      return false;
    }
    submitted.bump();
    ring.push_back(std::move(task));
    size.store(ring.size(), std::memory_order_seq_cst);
    return true;
  };
  bool accepted = false;
  if (auto* self = t_worker; self != nullptr && &self->pool == this) {
    accepted = push(self->lock, self->deque, self->approx_size, self->submitted);
  } else {
    auto& lane = lane_of_this_thread();
    accepted = push(lane.lock, lane.ring, lane.approx_size, lane.submitted);
  }
  if (!accepted) {
    throw_not_accepting();
  }
  notify_one();
}

void scheduler::throw_not_accepting() {
  std::lock_guard guard(m_broken_lock);
  if (m_broken) {
    throw *m_broken;
  }
  throw broken_executor("thread_pool '" + m_name + "': submit after shutdown");
}

void scheduler::notify_one() noexcept {
  if (m_spinning.load(std::memory_order_seq_cst) > 0) {
    return; // a spinning worker looks again before it sleeps or runs anything else
  }
  if (m_sleepers.load(std::memory_order_seq_cst) > 0 && !m_notified.exchange(true, std::memory_order_seq_cst)) {
    m_epoch.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(m_epoch, 1);
  }
}

// A producer that found the notified flag set pushed its task without a
// wake-up, counting on the worker already woken; and a worker that took a
// batch leaves work in its deque that only stealing can spread. So whoever
// takes a task while others sleep and work is still queued passes a wake-up
// on. With nobody asleep this is one load.
void scheduler::pass_on_wake_up() noexcept {
  if (m_sleepers.load(std::memory_order_seq_cst) == 0) {
    return;
  }
  bool queued = false;
  for (std::size_t i = 0; i < m_lanes.size() && !queued; ++i) {
    queued = m_lanes[i]->approx_size.load(std::memory_order_seq_cst) > 0;
  }
  for (std::size_t i = 0; i < m_workers.size() && !queued; ++i) {
    queued = m_workers[i]->approx_size.load(std::memory_order_seq_cst) > 0;
  }
  if (queued) {
    // Gated by the flag like a producer's wake-up: a set flag means a woken
    // worker has not cleared it yet, and it looks for work after clearing.
    notify_one();
  }
}

void scheduler::notify_all() noexcept {
  m_epoch.fetch_add(1, std::memory_order_seq_cst);
  futex_wake(m_epoch, INT_MAX);
}

void scheduler::notify_idle_waiters() noexcept {
  // A read-modify-write rather than a load: it orders this worker's last
  // "finished" store against a waiter's registration (see scheduler.hpp), in
  // a way ThreadSanitizer understands, unlike a fence.
  if (m_idle_waiters.fetch_add(0, std::memory_order_acq_rel) > 0) {
    m_idle_epoch.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(m_idle_epoch, INT_MAX);
  }
}

bool scheduler::idle() const noexcept {
  // "finished" first, then "submitted": see scheduler.hpp.
  std::uint64_t finished = m_outside_finished.load(std::memory_order_acquire);
  for (const auto& worker : m_workers) {
    finished += worker->finished.get();
  }
  std::uint64_t submitted = 0;
  for (const auto& lane : m_lanes) {
    submitted += lane->submitted.get();
  }
  for (const auto& worker : m_workers) {
    submitted += worker->submitted.get();
  }
  return finished == submitted;
}

void scheduler::wait_idle() {
  if (on_worker_thread()) {
    throw simul::error("thread_pool '" + m_name +
                       "': wait_idle called from one of the pool's own tasks would wait for itself");
  }
  while (!idle()) {
    m_idle_waiters.fetch_add(1, std::memory_order_seq_cst);
    const auto epoch = m_idle_epoch.load(std::memory_order_seq_cst);
    if (idle()) {
      m_idle_waiters.fetch_sub(1, std::memory_order_seq_cst);
      return;
    }
    futex_wait_until(m_idle_epoch, epoch, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
    m_idle_waiters.fetch_sub(1, std::memory_order_seq_cst);
  }
}

void scheduler::shutdown(shutdown_options options) {
  if (options.wait && on_worker_thread()) {
    throw simul::error("thread_pool '" + m_name +
                       "': shutdown(wait = true) called from one of the pool's own tasks would wait for itself");
  }
  if (options.cancel_pending) {
    m_cancel_all.store(true, std::memory_order_seq_cst);
  }
  m_stopping.store(true, std::memory_order_seq_cst);
  close_lanes();
  if (options.cancel_pending) {
    drain_all(task_action::cancel, nullptr);
  }
  notify_all();
  if (options.wait) {
    join_all();
  }
}

void scheduler::join_all() {
  std::lock_guard guard(m_join_lock);
  for (auto& worker : m_workers) {
    if (worker->thread.joinable() && worker->thread.get_id() != std::this_thread::get_id()) {
      worker->thread.join();
    }
  }
}

void scheduler::drain_all(task_action action, const std::exception_ptr* reason) {
  auto drop = [&](pool_task task) {
    try {
      (void)task(action, reason);
    } catch (...) {
      // Cancelling or abandoning never runs user code; nothing to report.
    }
    task.reset();
    m_outside_cancelled.fetch_add(1, std::memory_order_relaxed);
    m_outside_finished.fetch_add(1, std::memory_order_release);
  };
  auto drain = [&drop](spin_lock& lock, task_ring& ring, std::atomic<std::size_t>& size) {
    for (;;) {
      pool_task task;
      {
        std::lock_guard guard(lock);
        if (ring.empty()) {
          return;
        }
        task = ring.pop_front();
        size.store(ring.size(), std::memory_order_relaxed);
      }
      drop(std::move(task));
    }
  };
  for (auto& lane : m_lanes) {
    drain(lane->lock, lane->ring, lane->approx_size);
  }
  for (auto& worker : m_workers) {
    drain(worker->lock, worker->deque, worker->approx_size);
  }
}

void scheduler::break_pool(std::exception_ptr cause) {
  std::exception_ptr reason;
  {
    std::lock_guard guard(m_broken_lock);
    if (m_broken) {
      return; // another worker's initializer threw first and breaks the pool
    }
    m_broken.emplace("thread_pool '" + m_name + "' is broken: a worker's initializer threw: " + describe(cause), cause);
    reason = std::make_exception_ptr(*m_broken);
  }
  // Reported before anyone can see the pool broken (is_shutdown, a refused
  // submit, an abandoned future): whoever sees it finds the report made.
  report(reason);
  m_stopping.store(true, std::memory_order_seq_cst);
  close_lanes();
  drain_all(task_action::abandon, &reason);
  notify_all();
}

void scheduler::report(std::exception_ptr error) noexcept {
  std::function<void(std::exception_ptr)> handler;
  {
    std::lock_guard guard(m_handler_lock);
    handler = m_handler;
  }
  if (handler) {
    try {
      handler(error);
      return;
    } catch (...) {
      std::fprintf(stderr, "simul::thread_pool '%s': the exception handler threw: %s\n", m_name.c_str(),
                   describe(std::current_exception()).c_str());
    }
  }
  std::fprintf(stderr, "simul::thread_pool '%s': exception in a posted task: %s\n", m_name.c_str(),
               describe(error).c_str());
}

void scheduler::set_exception_handler(std::function<void(std::exception_ptr)> handler) {
  std::lock_guard guard(m_handler_lock);
  m_handler = std::move(handler);
}

thread_pool_stats scheduler::stats() const {
  thread_pool_stats out;
  out.workers = m_workers.size();
  out.threads = out.workers; // the old name, kept for one release
  out.cancelled = m_outside_cancelled.load(std::memory_order_relaxed);
  // Read in the order a task moves (counted as submitted, in a lane, in
  // transit, in a deque, running, finished), so that a task moving on while
  // this reads is still counted: `submitted` runs ahead of the rest by at
  // most the tasks in hand (being pushed, taken, finishing). Only a steal,
  // from a worker not yet read to one already read, can hide a task.
  for (const auto& lane : m_lanes) {
    out.submitted += lane->submitted.get();
    out.queued += lane->approx_size.load(std::memory_order_seq_cst);
  }
  for (const auto& worker : m_workers) {
    out.submitted += worker->submitted.get();
    out.queued += worker->in_transit.load(std::memory_order_seq_cst);
    out.queued += worker->approx_size.load(std::memory_order_seq_cst);
    out.running += worker->running.load(std::memory_order_relaxed);
    out.completed += worker->completed.get();
    out.failed += worker->failed.get();
    out.cancelled += worker->cancelled.get();
    out.stolen += worker->stolen.get();
  }
  return out;
}

} // namespace simul::detail
