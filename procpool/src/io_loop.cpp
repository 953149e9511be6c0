// The parent's side of a process pool: the I/O loop, workers' births, the
// zygote's reports, deadlines and the end of the loop (io_loop.hpp).
//
// A worker's death is known for certain only when the zygote reports its
// wait status; EOF or a corrupt frame on its socket just stops the reading.
// When the report comes, whatever the worker wrote before dying is drained
// first (io_answers.cpp), so a result that was sent is never mistaken for a
// crash.

#include "io_loop.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

namespace simul::detail::procpool {

namespace {
constexpr std::uint64_t k_control_key = 1;
constexpr std::uint64_t k_wake_key = 2;

process_pool_options resolved(process_pool_options options) {
  if (options.workers == 0) {
    options.workers = std::max(1U, std::thread::hardware_concurrency());
  }
  return options;
}

void watch(int epoll, int fd, std::uint64_t key, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = key;
  ::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev);
}
} // namespace

io_loop::io_loop(const process_pool_options& options)
    : m_options(resolved(options)), m_zygote(m_options), m_queue(m_options.task_timeout),
      m_epoll(::epoll_create1(EPOLL_CLOEXEC)) {
  if (!m_epoll) {
    throw simul::error(std::string("process_pool: epoll_create1 failed: ") + std::strerror(errno));
  }
  watch(m_epoll.get(), m_zygote.fd(), k_control_key, EPOLLIN);
  watch(m_epoll.get(), m_queue.wake_fd(), k_wake_key, EPOLLIN);
  m_thread = std::thread([this] { run(); });
  m_thread_id = m_thread.get_id();
}

io_loop::~io_loop() {
  m_queue.destroy();
  if (m_thread.joinable()) {
    m_thread.join();
  }
  m_zygote.close_and_reap();
  payload_cache_clear();
}

void io_loop::shutdown(shutdown_options options) {
  if (options.wait && std::this_thread::get_id() == m_thread_id) {
    throw simul::error("process_pool::shutdown(wait): called from the pool's own I/O thread (a continuation); it "
                       "would wait for itself");
  }
  m_queue.stop(options.cancel_pending);
  if (options.wait) {
    m_queue.wait_until_done();
  }
}

void io_loop::refresh_pids() {
  std::vector<int> pids;
  for (const auto& [id, w] : m_workers) {
    if (w.pid > 0 && w.state != worker_state::lost) {
      pids.push_back(w.pid);
    }
  }
  m_queue.set_pids(std::move(pids));
}

// ---------------------------------------------------------------- the loop

void io_loop::run() {
  for (std::size_t i = 0; i < m_options.workers; ++i) {
    spawn_worker();
  }
  epoll_event events[32];
  for (;;) {
    offer_idle_workers();
    const int n = ::epoll_wait(m_epoll.get(), events, 32, next_timeout_ms());
    reclaim_offers();
    for (int i = 0; i < n; ++i) {
      serve(events[i].data.u64);
    }
    check_deadlines();
    release_orphans();
    dispatch();
    if (retire_when_stopping()) {
      break;
    }
  }
  end_loop();
}

void io_loop::serve(std::uint64_t key) {
  if (key == k_wake_key) {
    m_queue.woken();
  } else if (key == k_control_key) {
    handle_control();
  } else if (auto it = m_workers.find(key); it != m_workers.end()) {
    if (it->second.pid < 0) {
      // Learn its pid before its first answer, so pids and answers stay in order.
      handle_control();
      it = m_workers.find(key);
    }
    if (it != m_workers.end()) {
      read_worker(it->second, false);
    }
  }
}

bool io_loop::retire_when_stopping() {
  const auto status = m_queue.status();
  if (!status.stopping) {
    return false;
  }
  if (status.destroying && !m_term_at) {
    m_term_at = pool_clock::now() + m_options.shutdown_grace;
    m_kill_at = *m_term_at + m_options.shutdown_grace;
  }
  if (status.empty || status.destroying) {
    // Idle workers leave now; busy ones when their task is done.
    for (auto& [id, w] : m_workers) {
      if (w.state == worker_state::idle) {
        retire(w);
      }
    }
  }
  return m_workers.empty() || !m_zygote.open();
}

void io_loop::end_loop() {
  // Whatever is still queued can no longer run (the pool broke or lost its zygote).
  for (auto& q : m_queue.take_all()) {
    q.request.slot->fail(
        std::make_exception_ptr(broken_executor("process_pool: the pool stopped before the task ran")));
  }
  for (auto& [id, w] : m_workers) {
    for (auto& task : w.take_line()) {
      task.request.slot->fail(std::make_exception_ptr(
          broken_executor("process_pool: the pool lost its zygote while " + describe_task(task) + " waited or ran")));
    }
    unregister_pool_fd(w.fd());
  }
  m_workers.clear();
  refresh_pids();
  m_queue.mark_done();
}

int io_loop::next_timeout_ms() {
  auto next = pool_clock::time_point::max();
  for (const auto& [id, w] : m_workers) {
    next = std::min(next, w.deadline());
  }
  if (m_term_at && !m_term_sent) {
    next = std::min(next, *m_term_at);
  } else if (m_kill_at && !m_kill_sent) {
    next = std::min(next, *m_kill_at);
  }
  if (next == pool_clock::time_point::max()) {
    return -1;
  }
  const auto left = next - pool_clock::now();
  if (left <= pool_clock::duration::zero()) {
    return 0;
  }
  return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
}

void io_loop::check_deadlines() {
  const auto now = pool_clock::now();
  for (auto& [id, w] : m_workers) {
    if (now >= w.deadline()) {
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

// ---------------------------------------------------------------- workers and the zygote

void io_loop::spawn_worker() {
  if (!m_zygote.open()) {
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
  for (const int fd : {mine.get(), theirs.get()}) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  }
  const auto id = m_next_worker++;
  if (!m_zygote.spawn(id, theirs.get())) {
    zygote_lost();
    return;
  }
  theirs.reset();
  register_pool_fd(mine.get());
  watch(m_epoll.get(), mine.get(), id, EPOLLIN | EPOLLRDHUP);
  auto& w = m_workers.try_emplace(id, id, std::move(mine)).first->second;
  w.watched = true;
}

void io_loop::handle_control() {
  for (;;) {
    control_msg msg;
    const int got = m_zygote.receive(msg);
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
        m_queue.note_spawned();
        refresh_pids();
      }
    } else if (msg.kind == control_kind::exited) {
      worker_exited(msg.worker, msg.pid, msg.value);
    } else if (msg.kind == control_kind::spawn_failed) {
      if (auto it = m_workers.find(msg.worker); it != m_workers.end()) {
        close_channel(it->second);
        m_workers.erase(it);
      }
      break_pool(nullptr, std::string("process_pool: the zygote could not fork a worker: ") + std::strerror(msg.value));
    }
  }
}

void io_loop::zygote_lost() {
  if (!m_zygote.open()) {
    return;
  }
  ::epoll_ctl(m_epoll.get(), EPOLL_CTL_DEL, m_zygote.fd(), nullptr);
  m_zygote.lost();
  if (!m_queue.status().destroying) {
    break_pool(nullptr, "process_pool: the zygote process died; its workers died with it");
  }
  // The workers' tasks are failed by release_orphans(), from the loop: a
  // caller here may be iterating over the workers.
}

void io_loop::release_orphans() {
  if (m_zygote.open() || m_workers.empty()) {
    return;
  }
  const bool destroying = m_queue.status().destroying;
  const std::string message = "process_pool: the zygote process died; its workers died with it";
  // No exit report will come for the workers (the zygote reported them, and
  // PR_SET_PDEATHSIG kills them with it): what they answered before dying is
  // delivered, every other task they held fails now.
  for (auto& [id, w] : m_workers) {
    if (w.watched) {
      read_worker(w, true);
    }
    close_channel(w);
    for (auto& task : w.take_line()) {
      const auto text = describe_task(task);
      task.request.slot->fail(std::make_exception_ptr(
          destroying ? broken_executor("process_pool: the pool was destroyed while " + text + " ran")
                     : broken_executor(message + " while " + text + " waited or ran")));
    }
    unregister_pool_fd(w.fd());
  }
  m_workers.clear();
  refresh_pids();
}

void io_loop::break_pool(std::exception_ptr cause, const std::string& message) {
  m_queue.break_pool(std::move(cause), message);
}

void io_loop::send_kill(const worker_link& w, int signal) {
  if (m_zygote.open() && !m_zygote.kill(w.id(), signal)) {
    zygote_lost();
  }
}

void io_loop::retire(worker_link& w) {
  w.state = worker_state::retiring;
  if (!send_frame(w.fd(), frame_kind::retire, 0, 0, {}, {})) {
    close_channel(w);
  }
}

void io_loop::close_channel(worker_link& w) {
  if (w.watched) {
    ::epoll_ctl(m_epoll.get(), EPOLL_CTL_DEL, w.fd(), nullptr);
    w.watched = false;
  }
  if (w.state != worker_state::retiring) {
    w.state = worker_state::lost;
  }
}

} // namespace simul::detail::procpool
