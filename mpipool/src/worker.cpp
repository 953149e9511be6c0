// A worker rank: take tasks from rank 0, run them, answer (see worker.hpp).
//
// The rank's main thread is the only one that calls MPI. Without `isolate`
// it runs each task itself, in order. With `isolate` it hands each task to
// a local process_pool and goes back to listening; the local pool's I/O
// thread reports each finished task through a queue this thread drains.
// Idle, the thread looks for a message less and less often (idle_backoff,
// yielding for 2 ms after its last message, then sleeping up to 1 ms, and up
// to 10 ms once idle for 50 ms), so a
// rank waiting for work uses well under 1% CPU.

#include "worker.hpp"

#include "messages.hpp"
#include "runtime.hpp"

#include <simul/procpool/detail/worker_heap.hpp>
#include <simul/procpool/process_pool.hpp>
#include <simul/trace/detail/recorder.hpp>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace simul::detail {

/// Runs in a local worker process of an isolated rank: the whole task
/// message in, the whole answer (header room included) out.
std::string run_isolated(std::string message);

std::string run_isolated(std::string message) {
  const mpi_header header = read_header(message.data(), message.size());
  in_message in{message.data(), message.size(), sizeof(mpi_header), nullptr, 0};
  out_message out = mpi_payload();
  // This local worker reads its own pool's ids as anchored; the task inside
  // came from rank 0, which names plain functions as executable offsets.
  struct executable_naming {
    code_naming outer = worker_code_naming();
    executable_naming() noexcept { set_worker_code_naming(code_naming::executable); }
    ~executable_naming() { set_worker_code_naming(outer); }
    executable_naming(const executable_naming&) = delete;
    executable_naming& operator=(const executable_naming&) = delete;
  } naming;
  code_from_offset<trampoline_fn>(header.fn)(in, out);
  check_no_descriptors(out, "a task's result");
  check_message_size(out, "a task's result");
  return std::move(out.bytes);
}

namespace {

class rank_server {
 public:
  explicit rank_server(mpi_runtime& runtime) : m_runtime(runtime) {}

  /// Serves until rank 0 says to end the process.
  void run() {
    idle_backoff backoff(std::chrono::microseconds(1000), std::chrono::microseconds(2000));
    received_message message;
    for (;;) {
      bool busy = send_finished();
      if (try_receive(m_runtime.comm(), 0, message)) {
        busy = true;
        if (!handle(message)) {
          return;
        }
      }
      if (busy) {
        backoff.reset();
        continue;
      }
      const auto pause = backoff.next();
      std::unique_lock guard(m_lock);
      if (pause.count() == 0) {
        guard.unlock();
        std::this_thread::yield();
      } else {
        m_wake.wait_for(guard, pause, [&] { return !m_finished.empty(); });
      }
    }
  }

 private:
  // False once rank 0 has told this process to end.
  bool handle(received_message& message) {
    mpi_header header;
    try {
      header = read_header(message.data(), message.size);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "simul::mpi_pool: rank %d dropped a message from rank 0: %s\n", m_runtime.rank(), e.what());
      return true;
    }
    switch (header.kind) {
    case mpi_kind::open:
      open(message);
      return true;
    case mpi_kind::task:
      if (m_local) {
        run_in_local_pool(header, message);
      } else {
        run_here(header, message);
      }
      return true;
    case mpi_kind::close:
      close();
      return header.fn == 0;
    default:
      std::fprintf(stderr, "simul::mpi_pool: rank %d dropped a message of unknown kind %u\n", m_runtime.rank(),
                   static_cast<unsigned>(header.kind));
      return true;
    }
  }

  void open(received_message& message) {
    in_message in{message.data(), message.size, sizeof(mpi_header), nullptr, 0};
    const auto settings = in.get_pod<session_settings>();
    if (settings.isolate != 0) {
      m_local = std::make_unique<process_pool>(process_pool_options{
          .workers = settings.isolate_workers,
          .shutdown_grace = std::chrono::nanoseconds(static_cast<std::int64_t>(settings.shutdown_grace_ns)),
          .keep_worker_heap = settings.keep_worker_heap != 0});
    } else if (settings.keep_worker_heap != 0) {
      keep_heap(true);
    }
  }

  // The pool's keep_worker_heap while it is open (see worker_heap.hpp).
  void keep_heap(bool keep) {
    if (keep != m_keeping_heap) {
      m_keeping_heap = keep;
      keep_worker_heap(keep);
    }
  }

  void close() {
    keep_heap(false);
    if (m_local) {
      m_local->shutdown({.wait = true});
      while (!m_running.empty()) {
        std::unique_lock guard(m_lock);
        m_wake.wait_for(guard, std::chrono::milliseconds(10), [&] { return !m_finished.empty(); });
        guard.unlock();
        send_finished();
      }
      m_local.reset();
    }
  }

  // `begin` / `end`: when this rank ran the task (for rank 0's trace).
  void answer(out_message& out, mpi_kind kind, std::uint64_t id, std::int64_t begin = 0, std::int64_t end = 0) {
    mpi_header header;
    header.kind = kind;
    header.id = id;
    header.run_begin = begin;
    header.run_end = end;
    header.apart = out.apart.size;
    send_blocking(m_runtime.comm(), 0, finish(out, header), "sending an answer to rank 0");
    if (out.apart.data != nullptr) {
      // Straight from the result's memory; rank 0 takes it right after the answer.
      send_blocking(m_runtime.comm(), 0, out.apart.data, out.apart.size, k_apart_tag,
                    "sending a result's bytes to rank 0");
      out.apart = {};
    }
  }

  void answer_error(std::uint64_t id, const std::string& type, const std::string& text, std::int64_t begin = 0,
                    std::int64_t end = 0) {
    out_message out = mpi_payload();
    encode(out, type);
    encode(out, text);
    answer(out, mpi_kind::error, id, begin, end);
  }

  void run_here(const mpi_header& header, received_message& message) {
    out_message out = mpi_payload();
    out.apart_threshold = k_send_apart; // a big vector or string result is not copied
    if (m_spare.capacity() > out.bytes.capacity()) {
      // The last result's buffer, already faulted in: a big result costs no page faults.
      m_spare.assign(out.bytes);
      out.bytes.swap(m_spare);
    }
    const std::int64_t begin = trace_now(); // sent back with the answer, for rank 0's trace
    try {
      in_message in{message.data(), message.size, sizeof(mpi_header), nullptr, 0};
      code_from_offset<trampoline_fn>(header.fn)(in, out);
      check_no_descriptors(out, "a task's result");
      check_message_size(out, "a task's result");
    } catch (...) {
      const auto [type, text] = describe_exception(std::current_exception());
      answer_error(header.id, type, text, begin, trace_now());
      return;
    }
    answer(out, mpi_kind::result, header.id, begin, trace_now());
    if (out.bytes.capacity() <= k_keep_result_buffer) {
      m_spare.swap(out.bytes);
    }
  }

  void run_in_local_pool(const mpi_header& header, received_message& message) {
    const std::int64_t begin = trace_now(); // the task's time here: from the hand-off to its answer
    future<std::string> result;
    try {
      result = m_local->submit(task_options{.timeout = std::chrono::nanoseconds(header.timeout_ns)}, &run_isolated,
                               std::string(message.data(), message.size));
    } catch (...) {
      const auto [type, text] = describe_exception(std::current_exception());
      answer_error(header.id, type, text);
      return;
    }
    const std::uint64_t id = header.id;
    auto& slot = m_running[id];
    slot.result = std::move(result);
    slot.begin = begin;
    slot.result.on_ready([this, id] {
      {
        std::lock_guard guard(m_lock);
        m_finished.push_back({id, trace_now()});
      }
      m_wake.notify_one();
    });
  }

  // Answers the tasks the local pool has finished; true if there were any.
  bool send_finished() {
    std::deque<finished_task> finished;
    {
      std::lock_guard guard(m_lock);
      finished.swap(m_finished);
    }
    for (const auto [id, end] : finished) {
      auto node = m_running.extract(id);
      const std::int64_t begin = node.mapped().begin;
      try {
        std::string bytes = node.mapped().result.get();
        out_message out;
        out.bytes = std::move(bytes);
        answer(out, mpi_kind::result, id, begin, end);
      } catch (const timeout_error& e) {
        out_message out = mpi_payload();
        encode(out, std::string(e.what()));
        answer(out, mpi_kind::timed_out, id, begin, end);
      } catch (const worker_crashed& e) {
        out_message out = mpi_payload();
        out.put_pod(static_cast<std::int32_t>(e.pid()));
        out.put_pod(static_cast<std::int32_t>(e.signal()));
        out.put_pod(static_cast<std::int32_t>(e.exit_code()));
        answer(out, mpi_kind::crashed, id, begin, end);
      } catch (const remote_error& e) {
        answer_error(id, e.type_name(), e.message(), begin, end);
      } catch (...) {
        const auto [type, text] = describe_exception(std::current_exception());
        answer_error(id, type, text, begin, end);
      }
    }
    return !finished.empty();
  }

  static constexpr std::size_t k_keep_result_buffer = std::size_t{256} << 20;

  mpi_runtime& m_runtime;
  std::string m_spare; ///< the last result's buffer, for the next
  bool m_keeping_heap = false;
  std::unique_ptr<process_pool> m_local;
  struct running_task {
    future<std::string> result;
    std::int64_t begin = 0;
  };
  struct finished_task {
    std::uint64_t id;
    std::int64_t end;
  };
  std::unordered_map<std::uint64_t, running_task> m_running;
  std::mutex m_lock;
  std::condition_variable m_wake;
  std::deque<finished_task> m_finished;
};

} // namespace

void serve(mpi_runtime& runtime) {
  trace_leave_to_rank_0();
  set_worker_code_naming(code_naming::executable); // as rank 0 names plain functions (mpi_pool::submit)
  runtime.finalize_at_exit();                      // the program's MPI_Finalize after the pool never runs here
  {
    rank_server server(runtime);
    try {
      server.run();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "simul::mpi_pool: rank %d stops serving: %s\n", runtime.rank(), e.what());
      std::exit(1);
    }
  }
  std::exit(0); // the runtime's destructor finalises MPI
}

} // namespace simul::detail
