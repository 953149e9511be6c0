#pragma once

// The parent's side of one worker (private): its socket, its in-flight line
// (the task it runs, then those sent ahead), the deadline of the one it
// runs, and the decoding of the frames it answers with. Also the one send
// path: `send_tasks` writes tasks to a worker's socket, for the I/O loop's
// dispatch and for a submitter writing to an offered idle worker alike.
//
// Thread-safety: a worker_link belongs to the I/O loop's thread;
// `send_tasks` may be called from any thread that owns the socket for the
// moment (the loop, or a submitter holding an offer under the queue's lock).
// Lifetime: owned by the loop (io_loop.hpp), in a std::map, so references
// stay valid while other workers come and go.

#include "task_queue.hpp"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace simul::detail::procpool {

inline constexpr std::size_t k_read_chunk = 64 * 1024;  ///< a worker's socket is read this much at a time
inline constexpr std::size_t k_batch_bytes = 64 * 1024; ///< a batch to one worker grows past this only by one task
inline constexpr auto k_slow_task = std::chrono::milliseconds(1); ///< slower: at most one task sent ahead

/// Writes `count` tasks to a worker's socket with as few system calls as it
/// can. Returns how many were written whole (fewer if the worker is gone).
std::size_t send_tasks(int fd, const running* tasks, std::size_t count);

enum class worker_state { idle, busy, retiring, lost };

class worker_link;

/// Where a worker's decoded frames go (the I/O loop).
class answer_sink {
 public:
  /// One complete, well-formed answer and its descriptors. False: stop
  /// reading this worker (it was found corrupt).
  virtual bool on_answer(worker_link& w, const frame_header& header, const char* payload,
                         std::vector<unique_fd>& fds) = 0;
  /// The worker sent something malformed: it must be ended.
  virtual void on_corrupt(worker_link& w, const std::string& reason) = 0;
  /// Its socket reached EOF (or failed) between frames.
  virtual void on_closed(worker_link& w) = 0;

 protected:
  ~answer_sink() = default;
};

class worker_link {
 public:
  worker_link(std::uint64_t id, unique_fd fd) : m_id(id), m_fd(std::move(fd)) {}

  [[nodiscard]] std::uint64_t id() const noexcept { return m_id; }
  [[nodiscard]] int fd() const noexcept { return m_fd.get(); }

  // ------------------------------------------------ the in-flight line

  [[nodiscard]] bool holds_nothing() const noexcept { return m_inflight.empty(); }
  [[nodiscard]] std::size_t held() const noexcept { return m_inflight.size(); }
  /// How many more tasks it may hold: up to `depth` (fewer if its last task
  /// was slow), never past `max_tasks` sent (0: no limit).
  [[nodiscard]] std::size_t room(std::size_t depth, std::size_t max_tasks) const noexcept;
  /// True if it may be offered to submitters while the loop sleeps.
  [[nodiscard]] bool can_be_offered(std::size_t max_tasks) const noexcept;
  /// Writes `batch` (send_tasks) and takes into its line what was written
  /// whole. Returns how many that was.
  std::size_t send(std::vector<running>& batch);
  /// A task a submitter wrote to it while it was on offer.
  void took(running&& task);
  /// The task it runs when its deadline is the earliest: time_point::max() if none.
  [[nodiscard]] pool_clock::time_point deadline() const noexcept;
  /// True if `id` is the task at the front of its line.
  [[nodiscard]] bool answers_front(std::uint64_t id) const noexcept;
  /// Takes the answered front task; the next one starts its clock.
  running finish_front();
  /// Takes its whole line (it died or the pool is going away).
  std::deque<running> take_line();

  // ------------------------------------------------ reading answers

  /// Reads what its socket holds and hands every complete frame to `sink`;
  /// with `drain`, until the socket is empty or closed (it died).
  void read(answer_sink& sink, bool drain);
  /// Whether its socket is still in the loop's epoll set.
  bool watched = false;

  // ------------------------------------------------ what the loop knows of it

  pid_t pid = -1;
  worker_state state = worker_state::idle;
  std::uint64_t tasks_done = 0;
  bool timed_out = false;
  bool init_failed = false;
  std::string kill_reason; ///< why the pool killed it, if it did

 private:
  void arm_front();

  std::uint64_t m_id;
  unique_fd m_fd;
  std::deque<running> m_inflight; ///< front: the task it runs; the rest wait in its socket
  std::uint64_t m_tasks_sent = 0;
  bool m_slow = false; ///< its last task ran past k_slow_task: send it fewer ahead
  std::vector<char> m_buffer;
  std::size_t m_have = 0;
  std::vector<unique_fd> m_fds; ///< descriptors received, not yet taken by a frame
};

} // namespace simul::detail::procpool
