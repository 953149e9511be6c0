// The parent's side of a process pool.
//
// One I/O thread owns every worker socket and the zygote's control socket; it
// waits on them with epoll, so a worker is served the moment it answers. Other
// threads touch only the queue, the flags and the counters, under one mutex,
// and wake the I/O thread through an eventfd. Promises are completed on the
// I/O thread with no lock held, so a continuation may submit more work.
//
// A worker's death is known for certain only when the zygote reports its wait
// status; EOF or a corrupt frame on its socket just stops the reading. When
// the report comes, whatever the worker wrote before dying is drained first,
// so a result that was sent is never mistaken for a crash.

#include "pool_core.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

namespace simul::detail {

namespace {
constexpr std::uint64_t k_control_key = 1;
constexpr std::uint64_t k_wake_key = 2;
constexpr std::size_t k_read_chunk = 64 * 1024;
constexpr std::size_t k_batch_bytes = 64 * 1024;
constexpr auto k_slow_task = std::chrono::milliseconds(1);
constexpr std::size_t k_direct_bytes = 64 * 1024;
constexpr auto k_spin = std::chrono::microseconds(30);

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
  // The zygote is forked here, before this pool starts any thread, so every
  // later fork happens in a process that has exactly one thread.
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pair[0]);
    ::close(pair[1]);
    fail_system("fork");
  }
  if (pid == 0) {
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

bool process_pool_core::try_send_direct(task_request& request, std::uint64_t id) {
  // Only small tasks without a timeout (the sleeping I/O thread could not
  // watch a deadline it does not know of).
  const auto timeout = request.timeout.count() == 0 ? m_options.task_timeout : request.timeout;
  if ((timeout.count() != 0 && timeout != std::chrono::nanoseconds::max()) ||
      request.payload.bytes.size() > k_direct_bytes) {
    return false;
  }
  for (auto& o : m_offers) {
    if (o.taken) {
      continue;
    }
    if (!request.slot->start()) {
      return true; // cancelled before it started: dropped, as the queue would
    }
    o.taken = true;
    const frame_out frame{frame_kind::task, id, request.trampoline, &request.payload.bytes, &request.payload.fds};
    if (send_frames(o.fd, &frame, 1) != 1) {
      o.send_failed = true; // the I/O thread ends the worker; the task waits in the queue
      return false;
    }
    o.task.id = id;
    o.task.timeout = timeout;
    o.task.request = std::move(request);
    o.task.started = clock::now();
    return true;
  }
  return false;
}

void process_pool_core::offer_idle_workers() {
  std::vector<offer> offers;
  for (auto& [id, w] : m_workers) {
    if (w.state == worker_state::idle && w.inflight.empty() && w.watched && !w.timed_out && w.kill_reason.empty() &&
        (m_options.max_tasks_per_child == 0 || w.tasks_sent < m_options.max_tasks_per_child)) {
      offer o;
      o.worker = id;
      o.fd = w.fd.get();
      offers.push_back(std::move(o));
    }
  }
  if (offers.empty()) {
    return;
  }
  std::lock_guard lock(m_mutex);
  if (!m_accepting || m_broken || !m_queue.empty()) {
    return;
  }
  m_offers = std::move(offers);
  m_offering = true;
}

void process_pool_core::reclaim_offers() {
  if (!m_offering) {
    return;
  }
  m_offering = false;
  std::vector<offer> offers;
  {
    std::lock_guard lock(m_mutex);
    offers.swap(m_offers);
  }
  for (auto& o : offers) {
    auto it = m_workers.find(o.worker);
    if (it == m_workers.end() || !o.taken) {
      continue;
    }
    worker& w = it->second;
    if (o.send_failed) {
      corrupt(w, "a task could not be written to it"); // part of a frame may be in its socket
      continue;
    }
    w.inflight.push_back(std::move(o.task));
    ++w.tasks_sent;
    w.state = worker_state::busy;
  }
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
  return m_stats;
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
    // A short spin before sleeping while an answer is due soon (a worker
    // holds a task, or a submitter may write to an offered one): waking from
    // epoll_wait costs more than the few polls that usually catch the answer.
    int n = 0;
    bool spun = false;
    if (m_offering || std::any_of(m_workers.begin(), m_workers.end(),
                                  [](const auto& entry) { return !entry.second.inflight.empty(); })) {
      const auto until = clock::now() + k_spin;
      do {
        n = ::epoll_wait(m_epoll.get(), events, 32, 0);
      } while (n == 0 && clock::now() < until);
      spun = n > 0;
    }
    if (!spun) {
      n = ::epoll_wait(m_epoll.get(), events, 32, next_timeout_ms());
    }
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

void process_pool_core::read_worker(worker& w, bool drain) {
  while (w.watched) {
    std::size_t want = sizeof(frame_header);
    frame_header header;
    if (w.have >= sizeof(header)) {
      std::memcpy(&header, w.buffer.data(), sizeof(header));
      want += static_cast<std::size_t>(header.size);
    }
    const auto capacity = std::max(want, w.have + k_read_chunk);
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
      const auto kind = static_cast<frame_kind>(header.kind);
      if (header.magic != k_frame_magic || header.size > k_max_frame ||
          (kind != frame_kind::result && kind != frame_kind::error && kind != frame_kind::init_error)) {
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
      type.resize(in.begin_blob());
      in.read_blob_body(type.data(), type.size());
      message.resize(in.begin_blob());
      in.read_blob_body(message.data(), message.size());
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
  {
    std::lock_guard lock(m_mutex);
    ++m_stats.completed;
    m_stats.recycled += retire ? 1 : 0;
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
      type.resize(in.begin_blob());
      in.read_blob_body(type.data(), type.size());
      message.resize(in.begin_blob());
      in.read_blob_body(message.data(), message.size());
    } catch (const std::exception& e) {
      type = "simul::serialization_error";
      message = std::string("the worker's error report was unreadable: ") + e.what();
    }
    task.request.slot->fail(std::make_exception_ptr(remote_error(type, message)));
  }
  return true;
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

void process_pool_core::arm(running& task) {
  task.started = clock::now();
  if (task.timeout.count() > 0 && task.timeout != std::chrono::nanoseconds::max()) {
    task.deadline = task.started + std::chrono::duration_cast<clock::duration>(task.timeout);
  }
}

void process_pool_core::requeue_behind_front(worker& w, bool cancel, bool broken) {
  if (w.inflight.size() <= 1) {
    return;
  }
  std::deque<queued> back;
  while (w.inflight.size() > 1) {
    auto task = std::move(w.inflight.back());
    w.inflight.pop_back();
    if (cancel) {
      task.request.slot->cancel("process_pool: the pool stopped before the task started");
    } else if (broken) {
      std::exception_ptr error;
      {
        std::lock_guard lock(m_mutex);
        error = std::make_exception_ptr(broken_executor(m_broken_message, m_broken));
      }
      task.request.slot->fail(error); // no lock held: its continuations may submit
    } else {
      back.push_front({task.id, std::move(task.request)});
    }
  }
  std::lock_guard lock(m_mutex);
  while (!back.empty()) {
    m_queue.push_front(std::move(back.back()));
    back.pop_back();
  }
}

void process_pool_core::dispatch() {
  // How many more tasks each worker may hold: up to the pipeline depth, and
  // never past its max_tasks_per_child (it retires after what it holds; its
  // replacement takes the rest).
  const auto depth = std::max<std::size_t>(1, m_options.pipeline_depth);
  struct room {
    worker* w = nullptr;
    std::size_t free = 0;
    std::size_t bytes = 0;
    std::vector<running> batch;
  };
  std::vector<room> rooms;
  std::size_t total = 0;
  for (auto& [id, w] : m_workers) {
    // A worker whose last task was slow gets one task ahead at most: deep
    // pipelining only pays for small tasks, and would leave short tasks
    // waiting behind long ones while another worker may become free.
    const auto limit = w.slow ? std::min<std::size_t>(depth, 2) : depth;
    if ((w.state != worker_state::idle && w.state != worker_state::busy) || w.inflight.size() >= limit) {
      continue;
    }
    std::size_t free = limit - w.inflight.size();
    if (m_options.max_tasks_per_child != 0) {
      free = std::min(free, m_options.max_tasks_per_child > w.tasks_sent ? m_options.max_tasks_per_child - w.tasks_sent
                                                                         : std::size_t{0});
    }
    if (free > 0) {
      rooms.push_back({&w, free, 0, {}});
      total += free;
    }
  }
  if (total == 0) {
    return;
  }
  std::deque<queued> taken;
  {
    std::lock_guard lock(m_mutex);
    const auto n = std::min(total, m_queue.size());
    for (std::size_t i = 0; i < n; ++i) {
      taken.push_back(std::move(m_queue.front()));
      m_queue.pop_front();
    }
  }
  // Idle workers first; then, one level at a time, tasks sent ahead to busy
  // ones. A worker's batch stops growing past k_batch_bytes of payload, so a
  // few big tasks do not all queue behind one another in one socket.
  std::deque<queued> left;
  for (std::size_t level = 0; level < depth && !taken.empty(); ++level) {
    for (auto& r : rooms) {
      if (taken.empty()) {
        break;
      }
      if (r.w->inflight.size() + r.batch.size() != level || r.batch.size() >= r.free ||
          (r.bytes >= k_batch_bytes && level > 0)) {
        continue;
      }
      while (!taken.empty()) {
        auto next = std::move(taken.front());
        taken.pop_front();
        if (!next.request.slot->start()) {
          continue; // cancelled by its consumer before it started: dropped
        }
        running task;
        task.id = next.id;
        task.timeout = next.request.timeout.count() == 0 ? m_options.task_timeout : next.request.timeout;
        task.request = std::move(next.request);
        r.bytes += task.request.payload.bytes.size() + sizeof(frame_header);
        r.batch.push_back(std::move(task));
        break;
      }
    }
  }
  // Whatever no worker took (byte limits) goes back first in line, in order.
  if (!taken.empty()) {
    std::lock_guard lock(m_mutex);
    while (!taken.empty()) {
      m_queue.push_front(std::move(taken.back()));
      taken.pop_back();
    }
  }
  std::vector<frame_out> frames;
  for (auto& r : rooms) {
    if (r.batch.empty()) {
      continue;
    }
    worker& w = *r.w;
    frames.clear();
    for (const auto& task : r.batch) {
      frames.push_back(
          {frame_kind::task, task.id, task.request.trampoline, &task.request.payload.bytes, &task.request.payload.fds});
    }
    const auto sent = send_frames(w.fd.get(), frames.data(), frames.size());
    // Frames written whole may have been read and run: they are in the
    // worker's hands, and its death accounts for them (the one it ran fails,
    // the rest go back). The others never reached it: first in line again.
    if (sent < r.batch.size()) {
      std::lock_guard lock(m_mutex);
      while (r.batch.size() > sent) {
        m_queue.push_front({r.batch.back().id, std::move(r.batch.back().request)});
        r.batch.pop_back();
      }
    }
    for (auto& task : r.batch) {
      if (w.inflight.empty()) {
        arm(task);
      }
      w.inflight.push_back(std::move(task));
      ++w.tasks_sent;
    }
    if (!w.inflight.empty()) {
      w.state = worker_state::busy;
    }
    if (sent < frames.size()) {
      close_channel(w); // the worker is going away; the zygote's report ends it
    }
    w.state = worker_state::busy;
  }
}

} // namespace simul::detail
