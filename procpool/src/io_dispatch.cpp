// The parent's side of a process pool: how queued tasks reach workers (the
// I/O loop's thread; io_loop.hpp).
//
// dispatch() sends each worker, in one write, every queued task it may still
// hold (up to the pipeline depth, fewer for a worker whose last task was
// slow, never past max_tasks_per_child). While the loop sleeps, its idle
// workers are on offer to submitters (task_queue.cpp), who may write a task
// straight to one; the loop takes the offers back when it wakes. Both go
// through send_tasks (worker_link.cpp).

#include "io_loop.hpp"

#include <algorithm>
#include <deque>
#include <utility>
#include <vector>

namespace simul::detail::procpool {

void io_loop::offer_idle_workers() {
  std::vector<offer> offers;
  for (auto& [id, w] : m_workers) {
    if (w.can_be_offered(m_options.max_tasks_per_child)) {
      offer o;
      o.worker = id;
      o.fd = w.fd();
      offers.push_back(std::move(o));
    }
  }
  m_offering = m_queue.offer_workers(std::move(offers));
}

void io_loop::reclaim_offers() {
  if (!m_offering) {
    return;
  }
  m_offering = false;
  for (auto& o : m_queue.reclaim()) {
    auto it = m_workers.find(o.worker);
    if (it == m_workers.end() || !o.taken) {
      continue;
    }
    if (o.send_failed) {
      on_corrupt(it->second, "a task could not be written to it"); // part of a frame may be in its socket
      continue;
    }
    it->second.took(std::move(o.task));
  }
}

namespace {
/// What one worker gets in this round of dispatch.
struct room {
  worker_link* w = nullptr;
  std::size_t free = 0;
  std::size_t bytes = 0;
  std::vector<running> batch;
};
} // namespace

void io_loop::dispatch() {
  // How many more tasks each worker may hold: up to the pipeline depth, and
  // never past its max_tasks_per_child (it retires after what it holds; its
  // replacement takes the rest).
  const auto depth = std::max<std::size_t>(1, m_options.pipeline_depth);
  std::vector<room> rooms;
  std::size_t total = 0;
  for (auto& [id, w] : m_workers) {
    if (const auto free = w.room(depth, m_options.max_tasks_per_child); free > 0) {
      rooms.push_back({&w, free, 0, {}});
      total += free;
    }
  }
  if (total == 0) {
    return;
  }
  auto taken = m_queue.take(total);
  // Idle workers first; then, one level at a time, tasks sent ahead to busy
  // ones. A worker's batch stops growing past k_batch_bytes of payload, so a
  // few big tasks do not all queue behind one another in one socket.
  for (std::size_t level = 0; level < depth && !taken.empty(); ++level) {
    for (auto& r : rooms) {
      if (taken.empty()) {
        break;
      }
      if (r.w->held() + r.batch.size() != level || r.batch.size() >= r.free ||
          (r.bytes >= k_batch_bytes && level > 0)) {
        continue;
      }
      while (!taken.empty()) {
        auto next = std::move(taken.front());
        taken.pop_front();
        if (!next.request.slot->start()) {
          continue; // cancelled by its consumer before it started: dropped
        }
        r.bytes += next.request.payload.bytes.size() + sizeof(frame_header);
        r.batch.push_back(m_queue.to_running(std::move(next)));
        break;
      }
    }
  }
  // Whatever no worker took (byte limits) goes back first in line, in order.
  m_queue.put_back(std::move(taken));
  for (auto& r : rooms) {
    if (r.batch.empty()) {
      continue;
    }
    r.w->send(r.batch);
    // What was not written whole never reached the worker: first in line
    // again, and the worker, whose socket may hold half a frame, is ended.
    if (!r.batch.empty()) {
      std::deque<queued> back;
      for (auto& task : r.batch) {
        back.push_back({task.id, std::move(task.request)});
      }
      m_queue.put_back(std::move(back));
      on_corrupt(*r.w, "a task could not be written to it");
    }
  }
}

} // namespace simul::detail::procpool
