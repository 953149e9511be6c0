// Rank 0's progress thread (see client.hpp).

#include "client.hpp"

#include "messages.hpp"

#include <simul/mpipool/errors.hpp>
#include <simul/trace/detail/recorder.hpp>

#include <algorithm>
#include <utility>

namespace simul::detail {

mpi_client::mpi_client(mpi_runtime& runtime, const mpi_pool_options& options)
    : m_runtime(runtime), m_options(options), m_received(std::make_unique<received_message>()),
      m_apart(std::make_unique<received_message>()), m_workers(static_cast<std::size_t>(runtime.size() - 1)),
      m_load(static_cast<std::size_t>(runtime.size()), 0) {
  m_options.pipeline_depth = std::max<std::size_t>(1, m_options.pipeline_depth);
  out_message open = mpi_payload();
  session_settings settings;
  settings.isolate = m_options.isolate ? 1 : 0;
  settings.isolate_workers = static_cast<std::uint32_t>(std::max<std::size_t>(1, m_options.isolate_workers));
  settings.shutdown_grace_ns = static_cast<std::uint64_t>(m_options.shutdown_grace.count());
  settings.keep_worker_heap = m_options.keep_worker_heap ? 1 : 0;
  open.put_pod(settings);
  mpi_header header;
  header.kind = mpi_kind::open;
  finish(open, header);
  for (int r = 1; r < m_runtime.size(); ++r) {
    send_blocking(m_runtime.comm(), r, open.bytes, "opening the pool on a worker rank");
  }
  m_runtime.set_workers_parked(false);
  m_thread = std::thread([this] { run(); });
}

mpi_client::~mpi_client() { shutdown(true, true); }

namespace {
constexpr std::size_t k_keep_spare_at_most = std::size_t{256} << 20;
constexpr std::size_t k_spare_slack = 4096; // the header, the callable, blob tags
// Answers closer together than this keep the progress thread yielding
// between them rather than sleeping (see run).
constexpr std::chrono::microseconds k_spin_below_gap{250};
} // namespace

out_message mpi_client::payload_for(std::size_t size_hint) {
  out_message out = mpi_payload();
  if (size_hint < k_huge_payload) {
    return out;
  }
  const std::size_t want = size_hint + k_spare_slack;
  std::string spare;
  {
    std::lock_guard guard(m_spare_lock);
    if (m_spare.capacity() >= want) {
      spare.swap(m_spare);
    }
  }
  if (spare.capacity() >= want) {
    // Pages already faulted in: a fresh 64 MiB buffer costs 16,384 page faults.
    spare.assign(out.bytes);
    out.bytes.swap(spare);
  } else {
    out.bytes.reserve(want);
    advise_huge_pages(out.bytes.data(), out.bytes.capacity());
  }
  return out;
}

void mpi_client::keep_spare(std::string&& bytes) noexcept {
  if (bytes.capacity() < k_huge_payload || bytes.capacity() > k_keep_spare_at_most) {
    return;
  }
  std::string old;
  std::lock_guard guard(m_spare_lock);
  if (bytes.capacity() >= m_spare.capacity()) {
    old.swap(m_spare); // freed after the lock
    m_spare.swap(bytes);
  }
}

void mpi_client::enqueue(task_request&& request, state_base& state) {
  check_no_descriptors(request.payload, "a task's argument");
  check_message_size(request.payload, "a task");
  if (request.timeout.count() != 0 && !m_options.isolate && request.timeout != std::chrono::nanoseconds::max()) {
    throw error("mpi_pool: a task timeout needs `isolate = true` (only a local worker process can be killed)");
  }
  {
    std::lock_guard guard(m_lock);
    if (m_stopping) {
      throw broken_executor("mpi_pool: submit after shutdown");
    }
    if (m_unanswered.fetch_add(1, std::memory_order_relaxed) < m_workers) {
      // Its answer is a round trip away, and the progress thread polls for
      // it: a waiter spinning beside that thread would take the core it
      // needs. Behind other tasks, answers come close together and a short
      // spin catches them without a futex wake-up each.
      state.set_waiters_sleep();
    }
    m_queue.push_back(std::move(request));
    m_submitted.fetch_add(1, std::memory_order_relaxed);
  }
  m_wake.notify_one();
}

void mpi_client::shutdown(bool wait, bool cancel_pending) {
  if (wait && std::this_thread::get_id() == m_thread.get_id()) {
    throw error("mpi_pool: shutdown({.wait = true}) called from the pool's progress thread (a future's callback); "
                "it would wait for itself");
  }
  std::deque<task_request> cancelled;
  {
    std::lock_guard guard(m_lock);
    m_stopping = true;
    m_closed.store(true, std::memory_order_release);
    if (cancel_pending) {
      cancelled.swap(m_queue);
    }
  }
  m_wake.notify_one();
  for (auto& request : cancelled) {
    request.slot->cancel("mpi_pool: cancelled by shutdown");
    m_cancelled.fetch_add(1, std::memory_order_relaxed);
    m_unanswered.fetch_sub(1, std::memory_order_relaxed);
  }
  if (wait) {
    std::lock_guard guard(m_join_lock);
    if (m_thread.joinable()) {
      m_thread.join();
    }
  }
}

mpi_pool_stats mpi_client::stats() const {
  mpi_pool_stats s;
  s.submitted = m_submitted.load(std::memory_order_relaxed);
  s.completed = m_completed.load(std::memory_order_relaxed);
  s.crashed = m_crashed.load(std::memory_order_relaxed);
  s.timed_out = m_timed_out.load(std::memory_order_relaxed);
  s.cancelled = m_cancelled.load(std::memory_order_relaxed);
  s.in_flight = m_in_flight_count.load(std::memory_order_relaxed);
  return s;
}

void mpi_client::run() noexcept {
  // While tasks are out, answers are looked for at most every eighth of the
  // usual gap between two answers (20 µs .. 1 ms). Only while answers come
  // close together (tiny tasks) does the thread yield instead of sleeping, for
  // up to 1 ms after the last one; with longer tasks it would take CPU from
  // the ranks that share this machine. With nothing out and nothing queued it
  // sleeps until a submit or shutdown: the caller waiting on the last answer
  // then gets this core at once.
  idle_backoff backoff(std::chrono::microseconds(1000), std::chrono::microseconds(1000));
  std::deque<task_request> ready;
  try {
    for (;;) {
      const std::size_t room = m_workers * m_options.pipeline_depth - m_in_flight.size();
      bool finishing = false;
      {
        std::lock_guard guard(m_lock);
        while (ready.size() < room && !m_queue.empty()) {
          ready.push_back(std::move(m_queue.front()));
          m_queue.pop_front();
        }
        finishing = m_stopping && m_queue.empty();
      }
      bool busy = send_ready(ready);
      busy = take_answers() || busy;
      if (finishing && ready.empty() && m_in_flight.empty()) {
        break;
      }
      if (busy) {
        backoff.reset();
        continue;
      }
      if (progress_sends()) {
        // A big task is still leaving, and MPI moves it only while it is
        // called: poll without pause until it is out (a 64 MiB task takes
        // tens of milliseconds), answers included.
        continue;
      }
      std::unique_lock guard(m_lock);
      if (m_in_flight.empty() && ready.empty()) {
        m_wake.wait(guard, [&] { return !m_queue.empty() || m_stopping; });
        backoff.reset();
        continue;
      }
      backoff.set_spin(m_answer_gap < k_spin_below_gap ? std::chrono::microseconds(1000)
                                                       : std::chrono::microseconds(0));
      backoff.set_max_sleep(std::clamp(std::chrono::duration_cast<std::chrono::microseconds>(m_answer_gap / 8),
                                       std::chrono::microseconds(20), std::chrono::microseconds(1000)));
      const auto pause = backoff.next();
      if (pause.count() == 0) {
        guard.unlock();
        std::this_thread::yield();
      } else {
        m_wake.wait_for(guard, pause, [&] { return !m_queue.empty() && room > ready.size(); });
      }
    }
  } catch (...) {
    fail_everything(std::current_exception());
  }
  release_workers();
}

bool mpi_client::progress_sends() {
  for (auto pos = m_sending.begin(); pos != m_sending.end();) {
    const auto it = m_in_flight.find(*pos);
    int done = 1;
    if (it != m_in_flight.end()) {
      check_mpi(MPI_Test(&it->second.send, &done, MPI_STATUS_IGNORE), "sending a task (MPI_Test)");
    }
    pos = done != 0 ? m_sending.erase(pos) : pos + 1;
  }
  return !m_sending.empty();
}

bool mpi_client::send_ready(std::deque<task_request>& ready) {
  bool sent = false;
  while (!ready.empty()) {
    // The least loaded rank; of equals, the last one used: one task at a
    // time goes to a rank that is awake, and the others fall asleep.
    std::size_t best = 0;
    for (std::size_t i = 0; i < m_workers; ++i) {
      const std::size_t r = 1 + (m_last_rank - 1 + i) % m_workers;
      if (m_load[r] < m_options.pipeline_depth && (best == 0 || m_load[r] < m_load[best])) {
        best = r;
      }
    }
    if (best == 0) {
      return sent;
    }
    task_request request = std::move(ready.front());
    ready.pop_front();
    if (!request.slot->start()) {
      m_cancelled.fetch_add(1, std::memory_order_relaxed);
      m_unanswered.fetch_sub(1, std::memory_order_relaxed);
      continue;
    }
    m_last_rank = best;
    if (m_in_flight.empty()) {
      m_last_answer = std::chrono::steady_clock::now(); // the first answer's gap counts from here
    }
    const std::uint64_t id = m_next_id++;
    mpi_header header;
    header.kind = mpi_kind::task;
    header.id = id;
    header.fn = request.trampoline;
    const auto timeout = request.timeout.count() != 0 ? request.timeout : m_options.task_timeout;
    header.timeout_ns = timeout == std::chrono::nanoseconds::max() ? 0 : timeout.count();
    set_header(request.payload, header);
    auto [it, inserted] =
        m_in_flight.emplace(id, in_flight{std::move(request), MPI_REQUEST_NULL, static_cast<int>(best)});
    (void)inserted;
    const std::string& bytes = it->second.request.payload.bytes;
    check_mpi(MPI_Isend(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, static_cast<int>(best), k_tag,
                        m_runtime.comm(), &it->second.send),
              "sending a task (MPI_Isend)");
    int done = 0;
    check_mpi(MPI_Test(&it->second.send, &done, MPI_STATUS_IGNORE), "sending a task (MPI_Test)");
    if (done == 0) {
      m_sending.push_back(id);
    }
    ++m_load[best];
    m_in_flight_count.fetch_add(1, std::memory_order_relaxed);
    sent = true;
  }
  return sent;
}

bool mpi_client::take_answers() {
  bool any = false;
  while (!m_in_flight.empty() && try_receive(m_runtime.comm(), MPI_ANY_SOURCE, *m_received)) {
    answer(*m_received);
    any = true;
  }
  return any;
}

void mpi_client::answer(received_message& message) {
  const mpi_header header = read_header(message.data(), message.size);
  const auto it = m_in_flight.find(header.id);
  if (it == m_in_flight.end() || it->second.rank != message.source) {
    throw mpi_error("mpi_pool: rank " + std::to_string(message.source) + " answered task " + std::to_string(header.id) +
                    ", which it was not given (a corrupt message)");
  }
  in_message in{message.data(), message.size, sizeof(mpi_header), nullptr, 0};
  if (header.apart != 0) {
    if (header.kind != mpi_kind::result) {
      throw mpi_error("mpi_pool: rank " + std::to_string(message.source) +
                      " announced bytes sent apart with an answer that is not a result (a corrupt message)");
    }
    receive_apart(m_runtime.comm(), message.source, header.apart, *m_apart);
    in.apart_data = m_apart->data();
    in.apart_size = m_apart->size;
  }
  in_flight task = std::move(it->second);
  m_in_flight.erase(it);
  const auto now = std::chrono::steady_clock::now();
  if (m_last_answer.time_since_epoch().count() != 0) {
    // A moving average of the gap between answers while tasks are out.
    const auto gap = std::min<std::chrono::nanoseconds>(now - m_last_answer, std::chrono::milliseconds(100));
    m_answer_gap = (m_answer_gap * 7 + gap) / 8;
  }
  m_last_answer = m_in_flight.empty() ? std::chrono::steady_clock::time_point{} : now;
  --m_load[static_cast<std::size_t>(task.rank)];
  m_in_flight_count.fetch_sub(1, std::memory_order_relaxed);
  m_unanswered.fetch_sub(1, std::memory_order_relaxed);
  // The answer proves the task arrived; this only releases the request.
  check_mpi(MPI_Wait(&task.send, MPI_STATUS_IGNORE), "completing a task's send (MPI_Wait)");
  if (const auto pos = std::find(m_sending.begin(), m_sending.end(), header.id); pos != m_sending.end()) {
    m_sending.erase(pos);
  }
  keep_spare(std::move(task.request.payload.bytes));
  task.request.payload = out_message{};
  if (trace_on()) [[unlikely]] { // the task's run on its rank's lane, on this rank's clock
    const auto& clock = m_runtime.clock(task.rank);
    trace_rank_run(clock.trace_lane, header.run_begin - clock.trace_offset_ns, header.run_end - clock.trace_offset_ns);
  }
  const std::string& host = m_runtime.host(task.rank);
  auto& slot = *task.request.slot;
  try {
    switch (header.kind) {
    case mpi_kind::result:
      m_completed.fetch_add(1, std::memory_order_relaxed);
      slot.deliver(in);
      return;
    case mpi_kind::error: {
      auto type = decode<std::string>(in);
      auto text = decode<std::string>(in);
      m_completed.fetch_add(1, std::memory_order_relaxed);
      slot.fail(std::make_exception_ptr(mpi_remote_error(std::move(type), std::move(text), task.rank, host)));
      return;
    }
    case mpi_kind::crashed: {
      const auto pid = in.get_pod<std::int32_t>();
      const auto signal = in.get_pod<std::int32_t>();
      const auto status = in.get_pod<std::int32_t>();
      m_crashed.fetch_add(1, std::memory_order_relaxed);
      slot.fail(
          std::make_exception_ptr(mpi_worker_crashed(pid, signal, status, task.request.describe(), task.rank, host)));
      return;
    }
    case mpi_kind::timed_out: {
      auto text = decode<std::string>(in);
      m_timed_out.fetch_add(1, std::memory_order_relaxed);
      slot.fail(std::make_exception_ptr(timeout_error(text + " (" + task.request.describe() + " on " +
                                                      mpi_remote_error::where(task.rank, host) + ")")));
      return;
    }
    default:
      throw serialization_error("mpi_pool: an answer of unknown kind " +
                                std::to_string(static_cast<std::uint32_t>(header.kind)));
    }
  } catch (...) {
    slot.fail(std::current_exception());
  }
}

void mpi_client::fail_everything(std::exception_ptr cause) noexcept {
  std::deque<task_request> queued;
  {
    std::lock_guard guard(m_lock);
    m_stopping = true;
    m_closed.store(true, std::memory_order_release);
    queued.swap(m_queue);
  }
  const auto broken = std::make_exception_ptr(broken_executor("mpi_pool: the pool broke", cause));
  for (auto& [id, task] : m_in_flight) {
    task.request.slot->fail(broken);
    // MPI may still read the buffer of a send it never completed: keep it.
    m_orphans.push_back(std::move(task.request.payload.bytes));
  }
  m_in_flight.clear();
  m_in_flight_count.store(0, std::memory_order_relaxed);
  m_unanswered.store(0, std::memory_order_relaxed);
  for (auto& request : queued) {
    request.slot->fail(broken);
  }
}

void mpi_client::release_workers() noexcept {
  mpi_header header;
  header.kind = mpi_kind::close;
  header.fn = m_options.keep_ranks ? 0 : 1;
  out_message close = mpi_payload();
  finish(close, header);
  try {
    for (int r = 1; r < m_runtime.size(); ++r) {
      send_blocking(m_runtime.comm(), r, close.bytes, "releasing a worker rank");
    }
  } catch (...) { // NOLINT(bugprone-empty-catch): MPI is gone; the job's end tells the ranks
  }
  m_runtime.set_workers_parked(m_options.keep_ranks);
  m_runtime.close_session();
}

} // namespace simul::detail
