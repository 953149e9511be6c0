// The parent's side of a process pool: how tasks reach workers (I/O thread,
// except try_send_direct, which runs in a submitter under the queue lock).
//
// dispatch() sends each worker, in one write, every queued task it may still
// hold (up to the pipeline depth, fewer for a worker whose last task was
// slow, never past max_tasks_per_child). While the I/O thread sleeps, its idle
// workers are offered to submitters, who may write a task straight to one.

#include "pool_core.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace simul::detail {

bool process_pool_core::try_send_direct(task_request& request, std::uint64_t id) {
  // Only small tasks without a timeout (the sleeping I/O thread could not
  // watch a deadline it does not know of).
  const auto timeout = request.timeout.count() == 0 ? m_options.task_timeout : request.timeout;
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
    const frame_out frame{frame_kind::task, id, request.trampoline, &request.payload.bytes, &request.payload.fds};
    if (send_frames(o.fd, &frame, 1) != 1) {
      o.send_failed = true; // the I/O thread ends the worker; the task waits in the queue
      return false;
    }
    o.task.id = id;
    o.task.timeout = timeout;
    o.task.request = std::move(request);
    o.task.started = clock::now();
    return true;
  }
  return false;
}

void process_pool_core::offer_idle_workers() {
  std::vector<offer> offers;
  for (auto& [id, w] : m_workers) {
    if (w.state == worker_state::idle && w.inflight.empty() && w.watched && !w.timed_out && w.kill_reason.empty() &&
        (m_options.max_tasks_per_child == 0 || w.tasks_sent < m_options.max_tasks_per_child)) {
      offer o;
      o.worker = id;
      o.fd = w.fd.get();
      offers.push_back(std::move(o));
    }
  }
  if (offers.empty()) {
    return;
  }
  std::lock_guard lock(m_mutex);
  if (!m_accepting || m_broken || !m_queue.empty()) {
    return;
  }
  m_offers = std::move(offers);
  m_offering = true;
}

void process_pool_core::reclaim_offers() {
  if (!m_offering) {
    return;
  }
  m_offering = false;
  std::vector<offer> offers;
  {
    std::lock_guard lock(m_mutex);
    offers.swap(m_offers);
  }
  for (auto& o : offers) {
    auto it = m_workers.find(o.worker);
    if (it == m_workers.end() || !o.taken) {
      continue;
    }
    worker& w = it->second;
    if (o.send_failed) {
      corrupt(w, "a task could not be written to it"); // part of a frame may be in its socket
      continue;
    }
    w.inflight.push_back(std::move(o.task));
    ++w.tasks_sent;
    w.state = worker_state::busy;
  }
}

void process_pool_core::arm(running& task) {
  task.started = clock::now();
  if (task.timeout.count() > 0 && task.timeout != std::chrono::nanoseconds::max()) {
    task.deadline = task.started + std::chrono::duration_cast<clock::duration>(task.timeout);
  }
}

void process_pool_core::requeue_behind_front(worker& w, bool cancel, bool broken) {
  if (w.inflight.size() <= 1) {
    return;
  }
  std::deque<queued> back;
  while (w.inflight.size() > 1) {
    auto task = std::move(w.inflight.back());
    w.inflight.pop_back();
    if (cancel) {
      task.request.slot->cancel("process_pool: the pool stopped before the task started");
    } else if (broken) {
      std::exception_ptr error;
      {
        std::lock_guard lock(m_mutex);
        error = std::make_exception_ptr(broken_executor(m_broken_message, m_broken));
      }
      task.request.slot->fail(error); // no lock held: its continuations may submit
    } else {
      back.push_front({task.id, std::move(task.request)});
    }
  }
  std::lock_guard lock(m_mutex);
  while (!back.empty()) {
    m_queue.push_front(std::move(back.back()));
    back.pop_back();
  }
}

void process_pool_core::dispatch() {
  // How many more tasks each worker may hold: up to the pipeline depth, and
  // never past its max_tasks_per_child (it retires after what it holds; its
  // replacement takes the rest).
  const auto depth = std::max<std::size_t>(1, m_options.pipeline_depth);
  struct room {
    worker* w = nullptr;
    std::size_t free = 0;
    std::size_t bytes = 0;
    std::vector<running> batch;
  };
  std::vector<room> rooms;
  std::size_t total = 0;
  for (auto& [id, w] : m_workers) {
    // A worker whose last task was slow gets one task ahead at most: deep
    // pipelining only pays for small tasks, and would leave short tasks
    // waiting behind long ones while another worker may become free.
    const auto limit = w.slow ? std::min<std::size_t>(depth, 2) : depth;
    if ((w.state != worker_state::idle && w.state != worker_state::busy) || w.inflight.size() >= limit) {
      continue;
    }
    std::size_t free = limit - w.inflight.size();
    if (m_options.max_tasks_per_child != 0) {
      free = std::min(free, m_options.max_tasks_per_child > w.tasks_sent ? m_options.max_tasks_per_child - w.tasks_sent
                                                                         : std::size_t{0});
    }
    if (free > 0) {
      rooms.push_back({&w, free, 0, {}});
      total += free;
    }
  }
  if (total == 0) {
    return;
  }
  std::deque<queued> taken;
  {
    std::lock_guard lock(m_mutex);
    const auto n = std::min(total, m_queue.size());
    for (std::size_t i = 0; i < n; ++i) {
      taken.push_back(std::move(m_queue.front()));
      m_queue.pop_front();
    }
  }
  // Idle workers first; then, one level at a time, tasks sent ahead to busy
  // ones. A worker's batch stops growing past k_batch_bytes of payload, so a
  // few big tasks do not all queue behind one another in one socket.
  std::deque<queued> left;
  for (std::size_t level = 0; level < depth && !taken.empty(); ++level) {
    for (auto& r : rooms) {
      if (taken.empty()) {
        break;
      }
      if (r.w->inflight.size() + r.batch.size() != level || r.batch.size() >= r.free ||
          (r.bytes >= k_batch_bytes && level > 0)) {
        continue;
      }
      while (!taken.empty()) {
        auto next = std::move(taken.front());
        taken.pop_front();
        if (!next.request.slot->start()) {
          continue; // cancelled by its consumer before it started: dropped
        }
        running task;
        task.id = next.id;
        task.timeout = next.request.timeout.count() == 0 ? m_options.task_timeout : next.request.timeout;
        task.request = std::move(next.request);
        r.bytes += task.request.payload.bytes.size() + sizeof(frame_header);
        r.batch.push_back(std::move(task));
        break;
      }
    }
  }
  // Whatever no worker took (byte limits) goes back first in line, in order.
  if (!taken.empty()) {
    std::lock_guard lock(m_mutex);
    while (!taken.empty()) {
      m_queue.push_front(std::move(taken.back()));
      taken.pop_back();
    }
  }
  std::vector<frame_out> frames;
  for (auto& r : rooms) {
    if (r.batch.empty()) {
      continue;
    }
    worker& w = *r.w;
    frames.clear();
    for (const auto& task : r.batch) {
      frames.push_back(
          {frame_kind::task, task.id, task.request.trampoline, &task.request.payload.bytes, &task.request.payload.fds});
    }
    const auto sent = send_frames(w.fd.get(), frames.data(), frames.size());
    // Frames written whole may have been read and run: they are in the
    // worker's hands, and its death accounts for them (the one it ran fails,
    // the rest go back). The others never reached it: first in line again.
    if (sent < r.batch.size()) {
      std::lock_guard lock(m_mutex);
      while (r.batch.size() > sent) {
        m_queue.push_front({r.batch.back().id, std::move(r.batch.back().request)});
        r.batch.pop_back();
      }
    }
    for (auto& task : r.batch) {
      if (w.inflight.empty()) {
        arm(task);
      }
      w.inflight.push_back(std::move(task));
      ++w.tasks_sent;
    }
    if (!w.inflight.empty()) {
      w.state = worker_state::busy;
    }
    if (sent < frames.size()) {
      corrupt(w, "a task could not be written to it"); // it may be half-written: the worker is killed
    }
    w.state = worker_state::busy;
  }
}

} // namespace simul::detail
