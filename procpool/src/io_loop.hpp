#pragma once

// The parent's side of a process pool (private): the one I/O thread that owns
// the workers and the link to the zygote, and waits on their sockets with
// epoll, so a worker is served the moment it answers. Submitters reach it
// only through its task_queue.
//
// The path of a task: process_pool::submit (process_pool.hpp) packs it
// (detail/task.hpp, the codec) → task_queue::push (task_queue.cpp) queues it,
// or writes it to an idle worker on offer → io_loop::dispatch (io_dispatch.cpp)
// sends queued tasks through worker_link::send (worker_link.cpp) → the
// worker runs it (zygote.cpp) → worker_link::read decodes the answer →
// io_loop::on_answer (io_answers.cpp) completes the task's promise → the
// future (core) wakes its waiter.
//
// Thread-safety: the constructor, the destructor and queue() are for the
// pool's owner; everything else runs on the loop's own thread.
// Lifetime: the destructor stops the thread (bounded: see process_pool.hpp)
// and reaps the zygote.

#include "task_queue.hpp"
#include "worker_link.hpp"
#include "zygote_link.hpp"

#include <simul/procpool/options.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace simul::detail::procpool {

class io_loop final : private answer_sink {
 public:
  explicit io_loop(const process_pool_options& options);
  ~io_loop();
  io_loop(const io_loop&) = delete;
  io_loop& operator=(const io_loop&) = delete;

  [[nodiscard]] task_queue& queue() noexcept { return m_queue; }
  [[nodiscard]] const task_queue& queue() const noexcept { return m_queue; }
  /// Stops accepting; with `wait`, until the loop has ended. Throws if
  /// asked to wait from the loop's own thread.
  void shutdown(shutdown_options options);
  [[nodiscard]] int zygote_pid() const noexcept { return m_zygote.pid(); }
  [[nodiscard]] const process_pool_options& options() const noexcept { return m_options; }

 private:
  // io_loop.cpp: the loop, workers' births, the zygote's reports.
  void run();
  void serve(std::uint64_t key);
  bool retire_when_stopping();
  void end_loop();
  int next_timeout_ms();
  void spawn_worker();
  void handle_control();
  void zygote_lost();
  void release_orphans();
  void break_pool(std::exception_ptr cause, const std::string& message);
  void send_kill(const worker_link& w, int signal);
  void retire(worker_link& w);
  void close_channel(worker_link& w);
  void check_deadlines();
  void refresh_pids();

  // io_dispatch.cpp: queued tasks to workers, offers to submitters.
  void dispatch();
  void offer_idle_workers();
  void reclaim_offers();

  // io_answers.cpp: answers and deaths.
  bool on_answer(worker_link& w, const frame_header& header, const char* payload, std::vector<unique_fd>& fds) override;
  void on_corrupt(worker_link& w, const std::string& reason) override;
  void on_closed(worker_link& w) override { close_channel(w); }
  void read_worker(worker_link& w, bool drain);
  void worker_exited(std::uint64_t id, pid_t pid, int status);
  void fail_dead_workers_task(worker_link& w, pid_t pid, int signal, int code, bool destroying);
  void count_crash(const std::string& last);
  void requeue_behind_front(std::deque<running>& line, bool cancel, bool broken);

  process_pool_options m_options;
  zygote_link m_zygote; ///< forked first: it inherits none of the descriptors below
  task_queue m_queue;
  unique_fd m_epoll;
  std::thread m_thread;
  std::thread::id m_thread_id;

  // The loop's thread only.
  std::map<std::uint64_t, worker_link> m_workers;
  std::uint64_t m_next_worker = 16;
  std::deque<pool_clock::time_point> m_crashes;
  std::optional<pool_clock::time_point> m_term_at;
  std::optional<pool_clock::time_point> m_kill_at;
  bool m_term_sent = false;
  bool m_kill_sent = false;
  bool m_offering = false; ///< the queue may hold offers
};

} // namespace simul::detail::procpool
