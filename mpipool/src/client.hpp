#pragma once

// Rank 0's side of an mpi_pool (private to the module): the queue that
// submitters fill and the progress thread that feeds the worker ranks.
//
// Submitters push task_requests under `m_lock` and wake the thread. The
// thread alone calls MPI: it sends each task with MPI_Isend straight from
// the request's buffer (header at its front), keeps up to `pipeline_depth`
// tasks in flight per worker, takes answers with MPI_Improbe / MPI_Mrecv
// and completes the futures. With nothing in flight it sleeps on a
// condition variable; with tasks in flight and nothing arriving it backs off
// to short sleeps (idle_backoff), yielding first only while answers come
// close together; never a busy loop. Its futures' waiters sleep rather than
// spin (state_base::set_waiters_sleep): this thread is the one that polls.

#include "runtime.hpp"

#include <simul/mpipool/options.hpp>
#include <simul/procpool/detail/task.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace simul::detail {

struct received_message;
struct mpi_header;

class mpi_client {
 public:
  mpi_client(mpi_runtime& runtime, const mpi_pool_options& options);
  ~mpi_client();
  mpi_client(const mpi_client&) = delete;
  mpi_client& operator=(const mpi_client&) = delete;

  /// See mpi_pool::payload_for. Thread-safety: any thread.
  out_message payload_for(std::size_t size_hint);
  /// Queues a task. `state` is its future's: a task that starts at once on
  /// an idle rank (latency-bound) gets waiters that sleep rather than spin,
  /// since this pool's progress thread is the one that polls for its answer.
  void enqueue(task_request&& request, state_base& state);
  void shutdown(bool wait, bool cancel_pending);
  [[nodiscard]] bool is_shutdown() const noexcept { return m_closed.load(std::memory_order_acquire); }
  [[nodiscard]] mpi_pool_stats stats() const;

 private:
  struct in_flight {
    task_request request;
    MPI_Request send = MPI_REQUEST_NULL;
    int rank = 0;
  };

  void run() noexcept;
  bool send_ready(std::deque<task_request>& ready);
  bool take_answers();
  /// Tests the sends not yet complete; true if some still are.
  bool progress_sends();
  void answer(received_message& message);
  void fail_everything(std::exception_ptr cause) noexcept;
  void release_workers() noexcept;
  /// Keeps a big task's buffer, once sent, for the next big task.
  void keep_spare(std::string&& bytes) noexcept;

  mpi_runtime& m_runtime;
  mpi_pool_options m_options;
  std::unique_ptr<received_message> m_received; ///< the answers' buffer, kept between answers
  std::unique_ptr<received_message> m_apart;    ///< the buffer of results' bytes sent apart, kept likewise
  std::size_t m_workers;

  mutable std::mutex m_lock;
  std::condition_variable m_wake;
  std::deque<task_request> m_queue;
  bool m_stopping = false;
  std::atomic<bool> m_closed{false};

  // The progress thread's own state.
  std::uint64_t m_next_id = 1;
  std::unordered_map<std::uint64_t, in_flight> m_in_flight;
  std::vector<std::size_t> m_load;      ///< tasks in flight per rank (index: rank)
  std::size_t m_last_rank = 1;          ///< the rank the last task went to
  std::vector<std::uint64_t> m_sending; ///< tasks whose MPI_Isend is not complete
  std::chrono::nanoseconds m_answer_gap{std::chrono::microseconds(100)};
  std::chrono::steady_clock::time_point m_last_answer{};
  std::vector<std::string> m_orphans; ///< buffers of sends abandoned when the pool broke

  std::mutex m_spare_lock;
  std::string m_spare; ///< a big task's buffer, already faulted in, for the next

  std::atomic<std::uint64_t> m_submitted{0};
  std::atomic<std::uint64_t> m_completed{0};
  std::atomic<std::uint64_t> m_crashed{0};
  std::atomic<std::uint64_t> m_timed_out{0};
  std::atomic<std::uint64_t> m_cancelled{0};
  std::atomic<std::uint64_t> m_in_flight_count{0};
  /// Tasks submitted and not yet answered or cancelled (queued, about to be
  /// sent, or out): `enqueue` counts the tasks ahead of a new one with it.
  std::atomic<std::uint64_t> m_unanswered{0};

  std::mutex m_join_lock;
  std::thread m_thread;
};

} // namespace simul::detail
