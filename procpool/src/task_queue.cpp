// The submitters' side of a process pool: the queue, the flags, the counters
// and the offered idle workers (task_queue.hpp).
//
// Submitters wake the I/O loop through an eventfd, once per sleep: a flag
// coalesces the writes. A submitter that finds the queue empty while the
// loop sleeps with an idle worker on offer writes its task to that worker
// itself, through send_tasks (worker_link.hpp), the one send path.

#include "task_queue.hpp"

#include "worker_link.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace simul::detail::procpool {

std::string describe_task(const running& task) {
  return "task " + std::to_string(task.id) + " (" + (task.request.describe != nullptr ? task.request.describe() : "?") +
         ")";
}

task_queue::task_queue(std::chrono::nanoseconds default_timeout)
    : m_default_timeout(default_timeout), m_wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!m_wake) {
    throw simul::error(std::string("process_pool: eventfd failed: ") + std::strerror(errno));
  }
}

void task_queue::wake() noexcept {
  if (!m_wake_pending.exchange(true, std::memory_order_seq_cst)) {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(m_wake.get(), &one, sizeof(one));
  }
}

void task_queue::woken() noexcept {
  // Drain first, then clear the flag: a submitter that saw the flag set
  // pushed its task before this point, and the loop's dispatch finds it; one
  // that comes later sees the flag clear and writes again.
  std::uint64_t count = 0;
  [[maybe_unused]] auto r = ::read(m_wake.get(), &count, sizeof(count));
  m_wake_pending.store(false, std::memory_order_seq_cst);
}

void task_queue::push(task_request&& request) {
  if (request.payload.fds.size() > k_max_fds) {
    throw serialization_error("process_pool: a task may carry at most " + std::to_string(k_max_fds) +
                              " shared-memory payloads (this one has " + std::to_string(request.payload.fds.size()) +
                              "); pass fewer big buffers, or raise shm_threshold");
  }
  {
    std::lock_guard lock(m_mutex);
    if (m_broken) {
      throw broken_executor(m_broken_message, m_broken);
    }
    if (!m_accepting) {
      throw broken_executor("process_pool: submit after shutdown");
    }
    const auto id = m_next_task++;
    ++m_stats.submitted;
    if (m_queue.empty() && !m_offers.empty() && send_to_offer(request, id)) {
      return; // a worker has it; the loop learns of it when it wakes
    }
    m_queue.push_back({id, std::move(request)});
  }
  wake();
}

// Under m_mutex.
bool task_queue::send_to_offer(task_request& request, std::uint64_t id) {
  // Only small tasks without a timeout (the sleeping loop could not watch a
  // deadline it does not know of).
  const auto timeout = request.timeout.count() == 0 ? m_default_timeout : request.timeout;
  if ((timeout.count() != 0 && timeout != std::chrono::nanoseconds::max()) ||
      request.payload.bytes.size() > k_direct_bytes) {
    return false;
  }
  for (auto& o : m_offers) {
    if (o.taken) {
      continue;
    }
    if (!request.slot->start()) {
      return true; // cancelled before it started: dropped, as the queue would
    }
    o.taken = true;
    o.task.id = id;
    o.task.timeout = timeout;
    o.task.request = std::move(request);
    o.task.started = pool_clock::now();
    if (send_tasks(o.fd, &o.task, 1) != 1) {
      o.send_failed = true; // the loop ends the worker; the task waits in the queue
      request = std::move(o.task.request);
      return false;
    }
    return true;
  }
  return false;
}

void task_queue::stop(bool cancel_pending) {
  std::deque<queued> dropped;
  {
    std::lock_guard lock(m_mutex);
    m_accepting = false;
    m_stopping = true;
    if (cancel_pending) {
      dropped.swap(m_queue);
    }
  }
  for (auto& q : dropped) {
    q.request.slot->cancel("process_pool: shutdown cancelled the task before it started");
  }
  wake();
}

void task_queue::destroy() {
  std::deque<queued> dropped;
  {
    std::lock_guard lock(m_mutex);
    m_accepting = false;
    m_stopping = true;
    m_destroying = !m_loop_done;
    dropped.swap(m_queue);
  }
  for (auto& q : dropped) {
    q.request.slot->cancel("process_pool: the pool was destroyed before the task started");
  }
  wake();
}

void task_queue::wait_until_done() {
  std::unique_lock lock(m_mutex);
  m_done_cv.wait(lock, [this] { return m_loop_done; });
}

void task_queue::mark_done() {
  {
    std::lock_guard lock(m_mutex);
    m_loop_done = true;
  }
  m_done_cv.notify_all();
}

bool task_queue::is_shutdown() const noexcept {
  std::lock_guard lock(m_mutex);
  return !m_accepting || m_broken != nullptr;
}

process_pool_stats task_queue::stats() const {
  std::lock_guard lock(m_mutex);
  auto stats = m_stats;
  stats.completed = m_completed.load(std::memory_order_acquire);
  return stats;
}

std::vector<int> task_queue::pids() const {
  std::lock_guard lock(m_mutex);
  return m_pids;
}

void task_queue::set_pids(std::vector<int> pids) {
  std::lock_guard lock(m_mutex);
  m_pids = std::move(pids);
}

queue_status task_queue::status() const {
  std::lock_guard lock(m_mutex);
  return {m_stopping, m_destroying, m_queue.empty(), m_broken != nullptr};
}

std::deque<queued> task_queue::take(std::size_t n) {
  std::deque<queued> taken;
  std::lock_guard lock(m_mutex);
  n = std::min(n, m_queue.size());
  for (std::size_t i = 0; i < n; ++i) {
    taken.push_back(std::move(m_queue.front()));
    m_queue.pop_front();
  }
  return taken;
}

std::deque<queued> task_queue::take_all() {
  std::deque<queued> all;
  std::lock_guard lock(m_mutex);
  all.swap(m_queue);
  return all;
}

void task_queue::put_back(std::deque<queued>&& tasks) {
  if (tasks.empty()) {
    return;
  }
  std::lock_guard lock(m_mutex);
  while (!tasks.empty()) {
    m_queue.push_front(std::move(tasks.back()));
    tasks.pop_back();
  }
}

running task_queue::to_running(queued&& task) const {
  running r;
  r.id = task.id;
  r.timeout = task.request.timeout.count() == 0 ? m_default_timeout : task.request.timeout;
  r.request = std::move(task.request);
  return r;
}

void task_queue::break_pool(std::exception_ptr cause, const std::string& message) {
  std::deque<queued> dropped;
  {
    std::lock_guard lock(m_mutex);
    if (m_broken) {
      return;
    }
    m_broken = cause ? cause : std::make_exception_ptr(simul::error(message));
    m_broken_message = message;
    m_accepting = false;
    dropped.swap(m_queue);
  }
  for (auto& q : dropped) {
    q.request.slot->fail(std::make_exception_ptr(broken_executor(message, cause)));
  }
}

std::exception_ptr task_queue::broken_error() const {
  std::lock_guard lock(m_mutex);
  return std::make_exception_ptr(broken_executor(m_broken_message, m_broken));
}

void task_queue::note_spawned() {
  std::lock_guard lock(m_mutex);
  ++m_stats.spawned;
}

void task_queue::note_crashed() {
  std::lock_guard lock(m_mutex);
  ++m_stats.crashed;
}

void task_queue::note_timed_out() {
  std::lock_guard lock(m_mutex);
  ++m_stats.timed_out;
}

void task_queue::note_recycled() {
  std::lock_guard lock(m_mutex);
  ++m_stats.recycled;
}

bool task_queue::offer_workers(std::vector<offer>&& offers) {
  if (offers.empty()) {
    return false;
  }
  std::lock_guard lock(m_mutex);
  if (!m_accepting || m_broken || !m_queue.empty()) {
    return false;
  }
  m_offers = std::move(offers);
  return true;
}

std::vector<offer> task_queue::reclaim() {
  std::vector<offer> offers;
  std::lock_guard lock(m_mutex);
  offers.swap(m_offers);
  return offers;
}

} // namespace simul::detail::procpool
