// The parent's side of a process pool.
//
// One I/O thread owns every worker socket and the zygote's control socket; it
// waits on them with epoll, so a worker is served the moment it answers. Other
// threads touch only the queue, the flags and the counters, under one mutex,
// and wake the I/O thread through an eventfd (once per sleep: a flag
// coalesces the writes). The one exception: while the I/O thread sleeps, it
// offers its idle workers, and a submitter that finds the queue empty writes
// its task straight to an offered worker's socket, under the mutex; the I/O
// thread takes the offers back before it does anything else. Promises are
// completed on the I/O thread with no lock held, so a continuation may
// submit more work.
//
// A worker's death is known for certain only when the zygote reports its wait
// status; EOF or a corrupt frame on its socket just stops the reading. When
// the report comes, whatever the worker wrote before dying is drained first,
// so a result that was sent is never mistaken for a crash.
//
// This file: construction, the queue's face, the I/O loop, workers' births
// and deaths. Sending tasks: pool_send.cpp; reading answers: pool_answers.cpp.

#include "pool_core.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

namespace simul::detail {

namespace {
constexpr std::uint64_t k_control_key = 1;
constexpr std::uint64_t k_wake_key = 2;

[[noreturn]] void fail_system(const char* what) {
  throw simul::error(std::string("process_pool: ") + what + " failed: " + std::strerror(errno));
}

std::string millis(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}
} // namespace

process_pool_core::process_pool_core(const process_pool_options& options) : m_options(options) {
  if (m_options.workers == 0) {
    m_options.workers = std::max(1U, std::thread::hardware_concurrency());
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    fail_system("socketpair");
  }
  const auto inherited = pool_fds_snapshot();
  zygote_config config;
  config.initializer = m_options.initializer;
  config.shm_threshold = m_options.shm_threshold;
  config.keep_worker_heap = m_options.keep_worker_heap;
  config.worker_spin_ns = static_cast<long>(std::chrono::nanoseconds(m_options.worker_spin).count());
  // The zygote is forked here, before this pool starts any thread, so every
  // later fork happens in a process that has exactly one thread.
  // Output still buffered in stdio would be copied into the zygote and
  // written again by every worker that flushes or exits (as multiprocessing,
  // only the standard streams: flushing every stream would wait on a lock
  // another thread holds while it reads).
  std::fflush(stdout);
  std::fflush(stderr);
  payload_cache_before_fork();
  shared_blocks_before_fork();
  const pid_t pid = ::fork();
  if (pid != 0) {
    shared_blocks_parent_after_fork();
    payload_cache_parent_after_fork();
  }
  if (pid < 0) {
    ::close(pair[0]);
    ::close(pair[1]);
    fail_system("fork");
  }
  if (pid == 0) {
    shared_blocks_child_after_fork();
    payload_cache_child_after_fork(); // the parent's cached memfds are the parent's to write
    ::close(pair[0]);
    for (const int fd : inherited) {
      ::close(fd);
    }
    zygote_main(pair[1], config);
  }
  ::close(pair[1]);
  m_zygote_pid = pid;
  m_control.reset(pair[0]);
  register_pool_fd(m_control.get());

  m_epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
  m_wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!m_epoll || !m_wake) {
    unregister_pool_fd(m_control.get());
    m_control.reset();
    ::waitpid(m_zygote_pid, nullptr, 0);
    fail_system("epoll/eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = k_control_key;
  ::epoll_ctl(m_epoll.get(), EPOLL_CTL_ADD, m_control.get(), &ev);
  ev.data.u64 = k_wake_key;
  ::epoll_ctl(m_epoll.get(), EPOLL_CTL_ADD, m_wake.get(), &ev);

  m_thread = std::thread([this] { run(); });
  m_thread_id = m_thread.get_id();
}

process_pool_core::~process_pool_core() {
  std::deque<queued> dropped;
  {
    std::lock_guard lock(m_mutex);
    m_accepting = false;
    m_stopping = true;
    m_destroying = !m_thread_done;
    dropped.swap(m_queue);
  }
  for (auto& q : dropped) {
    q.request.slot->cancel("process_pool: the pool was destroyed before the task started");
  }
  wake();
  if (m_thread.joinable()) {
    m_thread.join();
  }
  unregister_pool_fd(m_control.get());
  m_control.reset(); // the zygote sees EOF, kills what is left and exits
  int status = 0;
  while (::waitpid(m_zygote_pid, &status, 0) < 0 && errno == EINTR) {
  }
  payload_cache_clear();
}

void process_pool_core::wake() {
  if (!m_wake_pending.exchange(true, std::memory_order_seq_cst)) {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(m_wake.get(), &one, sizeof(one));
  }
}

void process_pool_core::enqueue(task_request&& request) {
  if (request.payload.fds.size() > k_max_fds) {
    throw serialization_error("process_pool: a task may carry at most " + std::to_string(k_max_fds) +
                              " shared-memory payloads (this one has " + std::to_string(request.payload.fds.size()) +
                              "); pass fewer big buffers, or raise shm_threshold");
  }
  {
    std::lock_guard lock(m_mutex);
    if (m_broken) {
      throw broken_executor(m_broken_message, m_broken);
    }
    if (!m_accepting) {
      throw broken_executor("process_pool: submit after shutdown");
    }
    const auto id = m_next_task++;
    ++m_stats.submitted;
    if (m_queue.empty() && !m_offers.empty() && try_send_direct(request, id)) {
      return; // a worker has it; the I/O thread learns of it when it wakes
    }
    m_queue.push_back({id, std::move(request)});
  }
  wake();
}

void process_pool_core::shutdown(shutdown_options options) {
  if (options.wait && std::this_thread::get_id() == m_thread_id) {
    throw simul::error("process_pool::shutdown(wait): called from the pool's own I/O thread (a continuation); it "
                       "would wait for itself");
  }
  std::deque<queued> dropped;
  {
    std::lock_guard lock(m_mutex);
    m_accepting = false;
    m_stopping = true;
    if (options.cancel_pending) {
      dropped.swap(m_queue);
    }
  }
  for (auto& q : dropped) {
    q.request.slot->cancel("process_pool: shutdown cancelled the task before it started");
  }
  wake();
  if (options.wait) {
    std::unique_lock lock(m_mutex);
    m_done_cv.wait(lock, [this] { return m_thread_done; });
  }
}

bool process_pool_core::is_shutdown() const noexcept {
  std::lock_guard lock(m_mutex);
  return !m_accepting || m_broken != nullptr;
}

process_pool_stats process_pool_core::stats() const {
  std::lock_guard lock(m_mutex);
  auto stats = m_stats;
  stats.completed = m_completed.load(std::memory_order_acquire);
  return stats;
}

std::vector<int> process_pool_core::worker_pids() const {
  std::lock_guard lock(m_mutex);
  return m_pids;
}

void process_pool_core::refresh_pids() {
  std::vector<int> pids;
  for (const auto& [id, w] : m_workers) {
    if (w.pid > 0 && w.state != worker_state::lost) {
      pids.push_back(w.pid);
    }
  }
  std::lock_guard lock(m_mutex);
  m_pids = std::move(pids);
}

std::string process_pool_core::task_text(const running& task) const {
  return "task " + std::to_string(task.id) + " (" + (task.request.describe != nullptr ? task.request.describe() : "?") +
         ")";
}

// ---------------------------------------------------------------- the I/O thread

void process_pool_core::run() {
  for (std::size_t i = 0; i < m_options.workers; ++i) {
    spawn_worker();
  }
  epoll_event events[32];
  for (;;) {
    offer_idle_workers();
    const int n = ::epoll_wait(m_epoll.get(), events, 32, next_timeout_ms());
    reclaim_offers();
    for (int i = 0; i < n; ++i) {
      const auto key = events[i].data.u64;
      if (key == k_wake_key) {
        // Drain first, then clear the flag: a submitter that saw the flag set
        // pushed its task before this point, and dispatch() below finds it; one
        // that comes later sees the flag clear and writes again.
        std::uint64_t count = 0;
        [[maybe_unused]] auto r = ::read(m_wake.get(), &count, sizeof(count));
        m_wake_pending.store(false, std::memory_order_seq_cst);
      } else if (key == k_control_key) {
        handle_control();
      } else if (auto it = m_workers.find(key); it != m_workers.end()) {
        if (it->second.pid < 0) {
          // Learn its pid before its first answer, so pids and answers stay in order.
          handle_control();
          it = m_workers.find(key);
        }
        if (it != m_workers.end()) {
          try {
            read_worker(it->second);
          } catch (const std::exception& e) {
            // e.g. no memory for the frame a worker announced: its problem, never the parent's
            corrupt(it->second, std::string("its message could not be received (") + e.what() + ")");
          }
        }
      }
    }
    check_deadlines();
    release_orphans();
    dispatch();

    bool stopping = false;
    bool destroying = false;
    bool queue_empty = false;
    {
      std::lock_guard lock(m_mutex);
      stopping = m_stopping;
      destroying = m_destroying;
      queue_empty = m_queue.empty();
    }
    if (!stopping) {
      continue;
    }
    if (destroying && !m_term_at) {
      m_term_at = clock::now() + m_options.shutdown_grace;
      m_kill_at = *m_term_at + m_options.shutdown_grace;
    }
    if (queue_empty || destroying) {
      // Idle workers leave now; busy ones when their task is done.
      for (auto& [id, w] : m_workers) {
        if (w.state == worker_state::idle) {
          w.state = worker_state::retiring;
          if (!send_frame(w.fd.get(), frame_kind::retire, 0, 0, {}, {})) {
            close_channel(w);
          }
        }
      }
    }
    if (m_workers.empty() || !m_control_open) {
      break;
    }
  }
  // Whatever is still queued can no longer run (the pool broke or lost its zygote).
  std::deque<queued> left;
  {
    std::lock_guard lock(m_mutex);
    left.swap(m_queue);
  }
  for (auto& q : left) {
    q.request.slot->fail(
        std::make_exception_ptr(broken_executor("process_pool: the pool stopped before the task ran")));
  }
  for (auto& [id, w] : m_workers) {
    for (auto& task : w.inflight) {
      task.request.slot->fail(std::make_exception_ptr(
          broken_executor("process_pool: the pool lost its zygote while " + task_text(task) + " waited or ran")));
    }
    unregister_pool_fd(w.fd.get());
  }
  m_workers.clear();
  refresh_pids();
  {
    std::lock_guard lock(m_mutex);
    m_thread_done = true;
  }
  m_done_cv.notify_all();
}

int process_pool_core::next_timeout_ms() {
  auto next = clock::time_point::max();
  for (const auto& [id, w] : m_workers) {
    if (!w.inflight.empty() && !w.timed_out) {
      next = std::min(next, w.inflight.front().deadline);
    }
  }
  if (m_term_at && !m_term_sent) {
    next = std::min(next, *m_term_at);
  } else if (m_kill_at && !m_kill_sent) {
    next = std::min(next, *m_kill_at);
  }
  if (next == clock::time_point::max()) {
    return -1;
  }
  const auto left = next - clock::now();
  if (left <= clock::duration::zero()) {
    return 0;
  }
  return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
}

void process_pool_core::spawn_worker() {
  if (!m_control_open) {
    return;
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    break_pool(nullptr, std::string("process_pool: socketpair for a worker failed: ") + std::strerror(errno));
    return;
  }
  unique_fd mine(pair[0]);
  unique_fd theirs(pair[1]);
  const int buffer = 1 << 20;
  ::setsockopt(mine.get(), SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  ::setsockopt(mine.get(), SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  ::setsockopt(theirs.get(), SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  ::setsockopt(theirs.get(), SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));

  const auto id = m_next_worker++;
  control_msg msg;
  msg.kind = control_kind::spawn;
  msg.worker = id;
  if (!send_control(m_control.get(), msg, theirs.get())) {
    zygote_lost();
    return;
  }
  theirs.reset();
  worker w;
  w.id = id;
  w.fd = std::move(mine);
  register_pool_fd(w.fd.get());
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = id;
  ::epoll_ctl(m_epoll.get(), EPOLL_CTL_ADD, w.fd.get(), &ev);
  w.watched = true;
  m_workers.emplace(id, std::move(w));
}

void process_pool_core::handle_control() {
  for (;;) {
    control_msg msg;
    unique_fd ignored;
    const int got = receive_control(m_control.get(), msg, ignored, false);
    if (got == -1) {
      return;
    }
    if (got <= 0) {
      zygote_lost();
      return;
    }
    if (msg.kind == control_kind::spawned) {
      if (auto it = m_workers.find(msg.worker); it != m_workers.end()) {
        it->second.pid = msg.pid;
        {
          std::lock_guard lock(m_mutex);
          ++m_stats.spawned;
        }
        refresh_pids();
      }
    } else if (msg.kind == control_kind::exited) {
      worker_exited(msg.worker, msg.pid, msg.value);
    } else if (msg.kind == control_kind::spawn_failed) {
      if (auto it = m_workers.find(msg.worker); it != m_workers.end()) {
        close_channel(it->second);
        m_workers.erase(it);
      }
      errno = msg.value;
      break_pool(nullptr, std::string("process_pool: the zygote could not fork a worker: ") + std::strerror(msg.value));
    }
  }
}

void process_pool_core::zygote_lost() {
  if (!m_control_open) {
    return;
  }
  m_control_open = false;
  ::epoll_ctl(m_epoll.get(), EPOLL_CTL_DEL, m_control.get(), nullptr);
  bool destroying = false;
  {
    std::lock_guard lock(m_mutex);
    destroying = m_destroying;
  }
  if (!destroying) {
    break_pool(nullptr, "process_pool: the zygote process died; its workers died with it");
  }
  int status = 0;
  ::waitpid(m_zygote_pid, &status, WNOHANG);
  // The workers' tasks are failed by release_orphans(), from the I/O loop:
  // a caller here may be iterating over the workers.
}

void process_pool_core::release_orphans() {
  if (m_control_open || m_workers.empty()) {
    return;
  }
  bool destroying = false;
  {
    std::lock_guard lock(m_mutex);
    destroying = m_destroying;
  }
  const std::string message = "process_pool: the zygote process died; its workers died with it";
  // No exit report will come for the workers (the zygote reported them, and
  // PR_SET_PDEATHSIG kills them with it): what they answered before dying is
  // delivered, every other task they held fails now.
  for (auto& [id, w] : m_workers) {
    if (w.watched) {
      try {
        read_worker(w, true);
      } catch (const std::exception&) {
        // its last message could not be received: its task fails below
      }
    }
    close_channel(w);
    for (auto& task : w.inflight) {
      const auto text = message + " while " + task_text(task) + " waited or ran";
      task.request.slot->fail(std::make_exception_ptr(
          destroying ? broken_executor("process_pool: the pool was destroyed while " + task_text(task) + " ran")
                     : broken_executor(text)));
    }
    w.inflight.clear();
    unregister_pool_fd(w.fd.get());
  }
  m_workers.clear();
  refresh_pids();
}

void process_pool_core::break_pool(std::exception_ptr cause, const std::string& message) {
  std::deque<queued> dropped;
  {
    std::lock_guard lock(m_mutex);
    if (m_broken) {
      return;
    }
    m_broken = cause ? cause : std::make_exception_ptr(simul::error(message));
    m_broken_message = message;
    m_accepting = false;
    dropped.swap(m_queue);
  }
  for (auto& q : dropped) {
    q.request.slot->fail(std::make_exception_ptr(broken_executor(message, cause)));
  }
}

void process_pool_core::send_kill(const worker& w, int signal) {
  control_msg msg;
  msg.kind = control_kind::kill;
  msg.worker = w.id;
  msg.value = signal;
  if (m_control_open && !send_control(m_control.get(), msg)) {
    zygote_lost();
  }
}

void process_pool_core::close_channel(worker& w) {
  if (w.watched) {
    ::epoll_ctl(m_epoll.get(), EPOLL_CTL_DEL, w.fd.get(), nullptr);
    w.watched = false;
  }
  if (w.state != worker_state::retiring) {
    w.state = worker_state::lost;
  }
}

void process_pool_core::corrupt(worker& w, const std::string& reason) {
  if (w.kill_reason.empty()) {
    w.kill_reason = reason;
  }
  close_channel(w);
  w.state = worker_state::lost;
  send_kill(w, SIGKILL);
}

void process_pool_core::worker_exited(std::uint64_t id, pid_t pid, int status) {
  auto it = m_workers.find(id);
  if (it == m_workers.end()) {
    return;
  }
  worker& w = it->second;
  if (w.pid < 0) {
    w.pid = pid;
  }
  // Everything it wrote before dying is already in the socket: read it first.
  read_worker(w, true);
  close_channel(w);

  const int signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  bool destroying = false;
  bool broken = false;
  {
    std::lock_guard lock(m_mutex);
    destroying = m_destroying;
    broken = m_broken != nullptr;
  }
  const bool expected = w.state == worker_state::retiring && w.inflight.empty();
  // The tasks behind the one it ran never started: they go back first in line
  // (or end now, if the pool is going away).
  requeue_behind_front(w, destroying, broken);
  if (!w.inflight.empty()) {
    auto task = std::move(w.inflight.front());
    w.inflight.clear();
    std::exception_ptr error;
    if (w.init_failed) {
      std::lock_guard lock(m_mutex);
      error = std::make_exception_ptr(broken_executor(m_broken_message, m_broken));
    } else if (w.timed_out) {
      error = std::make_exception_ptr(timeout_error("process_pool: " + task_text(task) + " ran past its timeout of " +
                                                    millis(task.timeout) + "; its worker " + std::to_string(pid) +
                                                    " was killed"));
      std::lock_guard lock(m_mutex);
      ++m_stats.timed_out;
    } else if (destroying) {
      error = std::make_exception_ptr(broken_executor("process_pool: the pool was destroyed while " + task_text(task) +
                                                      " ran; its worker " + std::to_string(pid) + " was stopped"));
    } else {
      auto text = task_text(task);
      if (!w.kill_reason.empty()) {
        text += " (killed by the pool because " + w.kill_reason + ")";
      }
      error = std::make_exception_ptr(worker_crashed(pid, signal, code, text));
    }
    task.request.slot->fail(error);
  }
  const bool crashed = !expected && !w.timed_out && !destroying && !w.init_failed;
  std::string last =
      "worker " + std::to_string(pid) +
      (signal != 0 ? " killed by signal " + std::to_string(signal) : " exited with status " + std::to_string(code));
  if (w.kill_reason.size() > 0) {
    last += " after " + w.kill_reason;
  }
  const bool was_retiring = w.state == worker_state::retiring;
  unregister_pool_fd(w.fd.get());
  m_workers.erase(it);
  refresh_pids();

  if (crashed) {
    std::lock_guard lock(m_mutex);
    ++m_stats.crashed;
  }
  if (crashed && !broken) {
    const auto now = clock::now();
    m_crashes.push_back(now);
    while (!m_crashes.empty() && now - m_crashes.front() > m_options.restart_window) {
      m_crashes.pop_front();
    }
    if (m_crashes.size() > m_options.restart_limit) {
      break_pool(nullptr, "process_pool: " + std::to_string(m_crashes.size()) + " workers died within " +
                              millis(m_options.restart_window) + " (restart_limit " +
                              std::to_string(m_options.restart_limit) +
                              "); the pool is broken to stop a crash loop; last: " + last);
      broken = true;
    }
  }
  bool stopping_idle = false;
  {
    std::lock_guard lock(m_mutex);
    stopping_idle = m_stopping && m_queue.empty();
  }
  // A retired worker's replacement was forked when it retired, except while stopping.
  if (!broken && !destroying && !stopping_idle && !(was_retiring && expected)) {
    spawn_worker();
  }
}

void process_pool_core::check_deadlines() {
  const auto now = clock::now();
  for (auto& [id, w] : m_workers) {
    if (!w.inflight.empty() && !w.timed_out && now >= w.inflight.front().deadline) {
      w.timed_out = true;
      send_kill(w, SIGKILL);
    }
  }
  if (m_term_at && !m_term_sent && now >= *m_term_at) {
    m_term_sent = true;
    for (auto& [id, w] : m_workers) {
      send_kill(w, SIGTERM);
    }
  }
  if (m_kill_at && !m_kill_sent && now >= *m_kill_at) {
    m_kill_sent = true;
    for (auto& [id, w] : m_workers) {
      send_kill(w, SIGKILL);
    }
  }
}

} // namespace simul::detail
