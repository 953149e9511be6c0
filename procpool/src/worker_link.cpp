// The parent's side of one worker: sending it tasks, its in-flight line, and
// reading its answers (worker_link.hpp).
//
// A worker's socket is read in bulk; every complete frame is checked (magic,
// kind, size, descriptors) before it goes to the loop, which checks that it
// answers the task at the front of the line. Anything malformed counts as
// that worker's crash, never the parent's.

#include "worker_link.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace simul::detail::procpool {

namespace {
frame_out task_frame(const running& task) noexcept {
  return {frame_kind::task, task.id, task.request.trampoline, &task.request.payload.bytes, &task.request.payload.fds};
}

/// True if `header` can start a worker's answer.
bool valid_answer(const frame_header& header) noexcept {
  const auto kind = static_cast<frame_kind>(header.kind);
  return header.magic == k_frame_magic && header.size <= k_max_frame &&
         (kind == frame_kind::result || kind == frame_kind::error || kind == frame_kind::init_error);
}
} // namespace

std::size_t send_tasks(int fd, const running* tasks, std::size_t count) {
  if (count == 1) {
    const auto frame = task_frame(tasks[0]);
    return send_frames(fd, &frame, 1);
  }
  std::vector<frame_out> frames;
  frames.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    frames.push_back(task_frame(tasks[i]));
  }
  return send_frames(fd, frames.data(), frames.size());
}

// ---------------------------------------------------------------- the in-flight line

std::size_t worker_link::room(std::size_t depth, std::size_t max_tasks) const noexcept {
  // A worker whose last task was slow gets one task ahead at most: deep
  // pipelining only pays for small tasks, and would leave short tasks
  // waiting behind long ones while another worker may become free.
  const auto limit = m_slow ? std::min<std::size_t>(depth, 2) : depth;
  if ((state != worker_state::idle && state != worker_state::busy) || m_inflight.size() >= limit) {
    return 0;
  }
  std::size_t free = limit - m_inflight.size();
  if (max_tasks != 0) {
    free = std::min(free, max_tasks > m_tasks_sent ? max_tasks - m_tasks_sent : std::size_t{0});
  }
  return free;
}

bool worker_link::can_be_offered(std::size_t max_tasks) const noexcept {
  return state == worker_state::idle && m_inflight.empty() && watched && !timed_out && kill_reason.empty() &&
         (max_tasks == 0 || m_tasks_sent < max_tasks);
}

std::size_t worker_link::send(std::vector<running>& batch) {
  const auto sent = send_tasks(m_fd.get(), batch.data(), batch.size());
  // Frames written whole may have been read and run: they are in the
  // worker's hands, and its death accounts for them. The rest stay in `batch`.
  for (std::size_t i = 0; i < sent; ++i) {
    m_inflight.push_back(std::move(batch[i]));
    ++m_tasks_sent;
    if (m_inflight.size() == 1) {
      arm_front();
    }
  }
  batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(sent));
  if (!m_inflight.empty()) {
    state = worker_state::busy;
  }
  return sent;
}

void worker_link::took(running&& task) {
  m_inflight.push_back(std::move(task));
  ++m_tasks_sent;
  state = worker_state::busy;
}

void worker_link::arm_front() {
  auto& task = m_inflight.front();
  task.started = pool_clock::now();
  if (task.timeout.count() > 0 && task.timeout != std::chrono::nanoseconds::max()) {
    task.deadline = task.started + std::chrono::duration_cast<pool_clock::duration>(task.timeout);
  }
}

pool_clock::time_point worker_link::deadline() const noexcept {
  if (m_inflight.empty() || timed_out) {
    return pool_clock::time_point::max();
  }
  return m_inflight.front().deadline;
}

bool worker_link::answers_front(std::uint64_t id) const noexcept {
  return !m_inflight.empty() && m_inflight.front().id == id;
}

running worker_link::finish_front() {
  auto task = std::move(m_inflight.front());
  m_inflight.pop_front();
  if (!m_inflight.empty()) {
    arm_front(); // the next one starts running now
    m_slow = m_inflight.front().started - task.started > k_slow_task;
  } else {
    m_slow = pool_clock::now() - task.started > k_slow_task;
  }
  ++tasks_done;
  if (state == worker_state::busy && m_inflight.empty()) {
    state = worker_state::idle;
  }
  return task;
}

std::deque<running> worker_link::take_line() {
  std::deque<running> line;
  line.swap(m_inflight);
  return line;
}

// ---------------------------------------------------------------- reading answers

void worker_link::read(answer_sink& sink, bool drain) {
  while (watched) {
    std::size_t want = sizeof(frame_header);
    frame_header header;
    if (m_have >= sizeof(header)) {
      std::memcpy(&header, m_buffer.data(), sizeof(header));
      if (!valid_answer(header)) {
        sink.on_corrupt(*this, "it sent a corrupt message");
        return;
      }
      want += static_cast<std::size_t>(header.size);
    }
    // The buffer grows with the bytes that came, at most doubling per read,
    // never to a length a header only announced: a forged header costs the
    // parent nothing until its bytes arrive.
    auto capacity = m_have + k_read_chunk;
    if (want > capacity) {
      capacity = std::min(want, std::max(capacity, 2 * m_buffer.size()));
    }
    if (m_buffer.size() < capacity) {
      m_buffer.resize(capacity);
    }
    const auto room = m_buffer.size() - m_have;
    const auto n = receive_some(m_fd.get(), m_buffer.data() + m_have, room, m_fds, false);
    if (n == -1) {
      return;
    }
    if (n == 0 || n == -2) {
      if (m_have > 0) {
        sink.on_corrupt(*this, "its last message was truncated");
      } else {
        sink.on_closed(*this);
      }
      return;
    }
    m_have += static_cast<std::size_t>(n);
    // Take every complete frame.
    std::size_t used = 0;
    while (m_have - used >= sizeof(header)) {
      std::memcpy(&header, m_buffer.data() + used, sizeof(header));
      if (!valid_answer(header)) {
        sink.on_corrupt(*this, "it sent a corrupt message");
        return;
      }
      if (m_have - used - sizeof(header) < header.size) {
        break;
      }
      if (m_fds.size() < header.nfds) {
        sink.on_corrupt(*this, "it sent a message without its descriptors");
        return;
      }
      std::vector<unique_fd> fds;
      for (std::size_t i = 0; i < header.nfds; ++i) {
        fds.push_back(std::move(m_fds[i]));
      }
      m_fds.erase(m_fds.begin(), m_fds.begin() + header.nfds);
      if (!sink.on_answer(*this, header, m_buffer.data() + used + sizeof(header), fds)) {
        return;
      }
      used += sizeof(header) + static_cast<std::size_t>(header.size);
    }
    if (used > 0) {
      std::memmove(m_buffer.data(), m_buffer.data() + used, m_have - used);
      m_have -= used;
      if (m_buffer.size() > 4 * k_read_chunk && m_have < k_read_chunk) {
        m_buffer.resize(k_read_chunk);
        m_buffer.shrink_to_fit();
      }
    }
    if (!drain && static_cast<std::size_t>(n) < room) {
      return; // a short read took what there was; epoll (level-triggered) says when more comes
    }
  }
}

} // namespace simul::detail::procpool
