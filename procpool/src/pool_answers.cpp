// The parent's side of a process pool: reading workers' answers (I/O thread).
//
// A worker's socket is read in bulk; every complete frame is checked (magic,
// kind, size, descriptors, and that it answers the task at the front of the
// worker's line) and completes its task's future. Anything malformed counts
// as that worker's crash, never the parent's.

#include "pool_core.hpp"

#include <simul/trace/detail/recorder.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace simul::detail {

namespace {
/// An error report's body: the exception's type name and its what(). Throws
/// if the message is malformed.
std::pair<std::string, std::string> read_error_report(in_message& in) {
  std::pair<std::string, std::string> out;
  out.first.resize(in.begin_blob());
  in.read_blob_body(out.first.data(), out.first.size());
  out.second.resize(in.begin_blob());
  in.read_blob_body(out.second.data(), out.second.size());
  return out;
}
} // namespace

namespace {
/// True if `header` can start a worker's answer.
bool valid_answer(const frame_header& header) noexcept {
  const auto kind = static_cast<frame_kind>(header.kind);
  return header.magic == k_frame_magic && header.size <= k_max_frame &&
         (kind == frame_kind::result || kind == frame_kind::error || kind == frame_kind::init_error);
}
} // namespace

void process_pool_core::read_worker(worker& w, bool drain) {
  while (w.watched) {
    std::size_t want = sizeof(frame_header);
    frame_header header;
    if (w.have >= sizeof(header)) {
      std::memcpy(&header, w.buffer.data(), sizeof(header));
      if (!valid_answer(header)) {
        corrupt(w, "it sent a corrupt message");
        return;
      }
      want += static_cast<std::size_t>(header.size);
    }
    // The buffer grows with the bytes that came, at most doubling per read,
    // never to a length a header only announced: a forged header costs the
    // parent nothing until its bytes arrive.
    auto capacity = w.have + k_read_chunk;
    if (want > capacity) {
      capacity = std::min(want, std::max(capacity, 2 * w.buffer.size()));
    }
    if (w.buffer.size() < capacity) {
      w.buffer.resize(capacity);
    }
    const auto room = w.buffer.size() - w.have;
    const auto n = receive_some(w.fd.get(), w.buffer.data() + w.have, room, w.fds, false);
    if (n == -1) {
      return;
    }
    if (n == 0 || n == -2) {
      if (w.have > 0) {
        corrupt(w, "its last message was truncated");
      } else {
        close_channel(w);
      }
      return;
    }
    w.have += static_cast<std::size_t>(n);
    // Take every complete frame.
    std::size_t used = 0;
    while (w.have - used >= sizeof(header)) {
      std::memcpy(&header, w.buffer.data() + used, sizeof(header));
      if (!valid_answer(header)) {
        corrupt(w, "it sent a corrupt message");
        return;
      }
      if (w.have - used - sizeof(header) < header.size) {
        break;
      }
      if (!process_frame(w, header, w.buffer.data() + used + sizeof(header))) {
        return;
      }
      used += sizeof(header) + static_cast<std::size_t>(header.size);
    }
    if (used > 0) {
      std::memmove(w.buffer.data(), w.buffer.data() + used, w.have - used);
      w.have -= used;
      if (w.buffer.size() > 4 * k_read_chunk && w.have < k_read_chunk) {
        w.buffer.resize(k_read_chunk);
        w.buffer.shrink_to_fit();
      }
    }
    if (!drain && static_cast<std::size_t>(n) < room) {
      return; // a short read took what there was; epoll (level-triggered) says when more comes
    }
  }
}

bool process_pool_core::process_frame(worker& w, const frame_header& header, const char* payload) {
  const auto kind = static_cast<frame_kind>(header.kind);
  if (w.pid < 0 && header.fn != 0) {
    // A worker can answer before the zygote reports its pid; every answer carries it.
    w.pid = static_cast<pid_t>(header.fn);
    refresh_pids();
  }
  if (w.fds.size() < header.nfds) {
    corrupt(w, "it sent a message without its descriptors");
    return false;
  }
  std::vector<unique_fd> fds;
  for (std::size_t i = 0; i < header.nfds; ++i) {
    fds.push_back(std::move(w.fds[i]));
  }
  w.fds.erase(w.fds.begin(), w.fds.begin() + header.nfds);
  in_message in{payload, static_cast<std::size_t>(header.size), 0, &fds, 0};

  if (kind == frame_kind::init_error) {
    std::string type;
    std::string message;
    try {
      std::tie(type, message) = read_error_report(in);
    } catch (const std::exception&) {
      corrupt(w, "it sent a corrupt message");
      return false;
    }
    auto cause = std::make_exception_ptr(remote_error(type, message));
    w.init_failed = true;
    break_pool(cause, "process_pool: the initializer failed in worker " + std::to_string(w.pid) + ": " + type + ": " +
                          message);
    return true;
  }
  if (w.inflight.empty() || w.inflight.front().id != header.id) {
    corrupt(w, "it answered a task it does not hold");
    return false;
  }
  auto task = std::move(w.inflight.front());
  w.inflight.pop_front();
  trace_worker_run(w.pid, header.run_begin, header.run_end);
  if (!w.inflight.empty()) {
    arm(w.inflight.front()); // the next one starts running now
    w.slow = w.inflight.front().started - task.started > k_slow_task;
  } else {
    w.slow = clock::now() - task.started > k_slow_task;
  }
  ++w.tasks_done;
  // Counters and the worker's state change before the future completes, so
  // whoever wakes on it sees them.
  bool retire = false;
  if (w.state == worker_state::busy && w.inflight.empty()) {
    w.state = worker_state::idle;
    retire = m_options.max_tasks_per_child != 0 && w.tasks_done >= m_options.max_tasks_per_child;
  }
  // An atomic, not the queue's lock, which submitters hold most of the time
  // during a burst: release, so that a future completed after it shows it.
  m_completed.fetch_add(1, std::memory_order_release);
  if (retire) {
    std::lock_guard lock(m_mutex);
    ++m_stats.recycled;
  }
  if (retire) {
    // The replacement is forked first, so queued work never waits for a worker.
    w.state = worker_state::retiring;
    if (!send_frame(w.fd.get(), frame_kind::retire, 0, 0, {}, {})) {
      close_channel(w);
    }
    bool broken = false;
    {
      std::lock_guard lock(m_mutex);
      broken = m_broken != nullptr || m_destroying;
    }
    if (!broken) {
      spawn_worker(); // std::map: `w` stays valid
    }
  }
  if (kind == frame_kind::result) {
    task.request.slot->deliver(in);
  } else {
    std::string type;
    std::string message;
    try {
      std::tie(type, message) = read_error_report(in);
    } catch (const std::exception& e) {
      type = "simul::serialization_error";
      message = std::string("the worker's error report was unreadable: ") + e.what();
    }
    task.request.slot->fail(std::make_exception_ptr(remote_error(type, message)));
  }
  return true;
}

} // namespace simul::detail
