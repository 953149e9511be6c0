#pragma once

// The parent's side of a process pool: the zygote, the workers' sockets, the
// queue and the one I/O thread that moves tasks and results (private).

#include "protocol.hpp"

#include <simul/procpool/detail/task.hpp>
#include <simul/procpool/options.hpp>
#include <simul/procpool/process_pool.hpp>

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace simul::detail {

inline constexpr std::size_t k_read_chunk = 64 * 1024;  ///< a worker's socket is read this much at a time
inline constexpr std::size_t k_batch_bytes = 64 * 1024; ///< a batch to one worker grows past this only by one task
inline constexpr auto k_slow_task = std::chrono::milliseconds(1); ///< slower: at most one task sent ahead
inline constexpr std::size_t k_direct_bytes = 64 * 1024;          ///< bigger tasks never go straight to a worker

class process_pool_core {
 public:
  explicit process_pool_core(const process_pool_options& options);
  ~process_pool_core();
  process_pool_core(const process_pool_core&) = delete;
  process_pool_core& operator=(const process_pool_core&) = delete;

  void enqueue(task_request&& request);
  void shutdown(shutdown_options options);
  [[nodiscard]] bool is_shutdown() const noexcept;
  [[nodiscard]] process_pool_stats stats() const;
  [[nodiscard]] std::vector<int> worker_pids() const;
  [[nodiscard]] int zygote_pid() const noexcept { return m_zygote_pid; }
  [[nodiscard]] const process_pool_options& options() const noexcept { return m_options; }

 private:
  using clock = std::chrono::steady_clock;

  struct queued {
    std::uint64_t id = 0;
    task_request request;
  };

  /// A task sent to a worker. The request (payload included) is kept until
  /// it is answered, so a task queued behind a crash can be sent again.
  struct running {
    std::uint64_t id = 0;
    task_request request;
    std::chrono::nanoseconds timeout{0};
    clock::time_point deadline = clock::time_point::max();
    clock::time_point started{}; ///< when it reached the front of its worker's line
  };

  enum class worker_state { idle, busy, retiring, lost };

  /// An idle worker offered to submitters while the I/O thread sleeps: a
  /// submitter that finds the queue empty writes its task straight to the
  /// worker's socket instead of waking the I/O thread. Offers exist only
  /// between `offer_idle_workers` and `reclaim_offers`, the I/O thread's
  /// epoll_wait, so whenever it is awake it owns every worker alone.
  struct offer {
    std::uint64_t worker = 0;
    int fd = -1;
    bool taken = false;       ///< a submitter used it (or tried to)
    bool send_failed = false; ///< the write failed: the task went to the queue
    running task;             ///< what was sent, if taken and sent
  };

  struct worker {
    std::uint64_t id = 0;
    pid_t pid = -1;
    unique_fd fd;
    worker_state state = worker_state::idle;
    std::deque<running> inflight; ///< front: the task it runs; the rest wait in its socket
    std::uint64_t tasks_sent = 0;
    std::uint64_t tasks_done = 0;
    bool timed_out = false;
    bool init_failed = false;
    bool watched = false;
    bool slow = false; ///< its last task ran past k_slow_task: send it fewer ahead
    std::string kill_reason;
    std::vector<char> buffer;
    std::size_t have = 0;
    std::vector<unique_fd> fds;
  };

  void run();
  void spawn_worker();
  void handle_control();
  void read_worker(worker& w, bool drain = false);
  bool process_frame(worker& w, const frame_header& header, const char* payload);
  void close_channel(worker& w);
  void corrupt(worker& w, const std::string& reason);
  void worker_exited(std::uint64_t id, pid_t pid, int status);
  void zygote_lost();
  /// After the zygote died: fails the tasks its workers held, forgets them.
  void release_orphans();
  void arm(running& task);
  void requeue_behind_front(worker& w, bool cancel, bool broken);
  void dispatch();
  void check_deadlines();
  int next_timeout_ms();
  void break_pool(std::exception_ptr cause, const std::string& message);
  void send_kill(const worker& w, int signal);
  void refresh_pids();
  std::string task_text(const running& task) const;
  void wake();
  bool try_send_direct(task_request& request, std::uint64_t id);
  void offer_idle_workers();
  void reclaim_offers();

  process_pool_options m_options;
  pid_t m_zygote_pid = -1;
  unique_fd m_control;
  unique_fd m_epoll;
  unique_fd m_wake;
  std::thread m_thread;
  std::thread::id m_thread_id;

  // I/O thread only.
  std::map<std::uint64_t, worker> m_workers;
  std::uint64_t m_next_worker = 16;
  std::deque<clock::time_point> m_crashes;
  bool m_control_open = true;
  std::optional<clock::time_point> m_term_at;
  std::optional<clock::time_point> m_kill_at;
  bool m_term_sent = false;
  bool m_kill_sent = false;

  // Shared, under m_mutex.
  mutable std::mutex m_mutex;
  std::condition_variable m_done_cv;
  std::deque<queued> m_queue;
  std::uint64_t m_next_task = 1;
  bool m_accepting = true;
  bool m_stopping = false;
  bool m_destroying = false;
  bool m_thread_done = false;
  std::exception_ptr m_broken;
  std::string m_broken_message;
  process_pool_stats m_stats;
  std::vector<int> m_pids;
  std::atomic<bool> m_wake_pending{false};
  std::atomic<std::uint64_t> m_completed{0}; ///< stats().completed, kept outside the lock
  std::vector<offer> m_offers;               ///< under m_mutex
  bool m_offering = false;                   ///< I/O thread only: m_offers may be non-empty
};

} // namespace simul::detail
