// One child process and how the loop watches it (process_state.hpp).

#include "io/process_state.hpp"

#include "io/counted_ref_impl.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <thread>
#include <utility>

namespace simul::detail {

namespace {

/// What `data` of a pidfd's poll handle points to, to tell it from other poll handles.
constexpr char k_child_watch_mark = 0;

/// Has a background thread reap `pid` when it exits (the loop is gone by then).
void reap_in_background(pid_t pid) noexcept {
  if (pid <= 0) {
    return;
  }
  try {
    std::thread([pid] {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }).detach();
  } catch (...) {
    // No thread to spare: the child stays a zombie until this process exits.
  }
}

} // namespace

struct process_state::box {
  union {
    uv_process_t process;
    uv_poll_t poll;
  } handle{}; // first: the handle's address is the box's
  process_state* owner = nullptr;
  int pidfd = -1; // >= 0: `handle.poll` watches it

  uv_handle_t* uv_handle() noexcept { return reinterpret_cast<uv_handle_t*>(&handle); }
};

process_state::process_state(event_loop& loop, std::string program)
    : m_loop(&loop), m_program(std::move(program)), m_box(new box()) {
  m_box->owner = this;
}

int process_state::spawn(uv_process_options_t& options) {
  options.exit_cb = &on_exit;
  const int rc = uv_spawn(uv_loop(*m_loop), &m_box->handle.process, &options);
  if (rc < 0) {
    // libuv wants the handle closed even when the spawn failed.
    m_close_started = true;
    uv_close(m_box->uv_handle(), &on_close);
    return rc;
  }
  m_pid = m_box->handle.process.pid;
  return 0;
}

void process_state::spawn(const child_setup& setup) {
  pid_t pid = 0;
  try {
    pid = spawn_child(setup, m_program);
  } catch (...) {
    delete std::exchange(m_box, nullptr); // its handle was never opened
    throw;
  }
  m_pid = pid;
  const int pidfd = open_pidfd(pid);
  if (pidfd < 0) {
    kill_and_reap(pid);
    delete std::exchange(m_box, nullptr);
    throw_io_error(pidfd, "watch", describe());
  }
  watch(pidfd);
}

void process_state::watch(int pidfd) {
  m_box->pidfd = pidfd;
  if (const int rc = uv_poll_init(uv_loop(*m_loop), &m_box->handle.poll, pidfd); rc < 0) {
    ::close(pidfd);
    kill_and_reap(m_pid);
    delete std::exchange(m_box, nullptr);
    throw_io_error(rc, "watch", describe());
  }
  m_box->handle.poll.data = const_cast<char*>(&k_child_watch_mark);
  if (const int rc = uv_poll_start(&m_box->handle.poll, UV_READABLE, &on_pidfd_readable); rc < 0) {
    kill_and_reap(m_pid);
    m_close_started = true;
    uv_close(m_box->uv_handle(), &on_close);
    throw_io_error(rc, "watch", describe());
  }
}

std::string process_state::describe() const { return m_program + " (pid " + std::to_string(m_pid) + ")"; }

void process_state::send_signal(int sig) const {
  if (m_returncode || m_box == nullptr || m_close_started) {
    return; // exited: nothing to signal (the pid may belong to someone else now)
  }
  const int rc = m_box->pidfd >= 0 ? signal_pidfd(m_box->pidfd, sig) : uv_process_kill(&m_box->handle.process, sig);
  if (rc < 0 && rc != UV_ESRCH) {
    throw_io_error(rc, "send signal " + std::to_string(sig) + " to", describe());
  }
}

void process_state::release() noexcept {
  if (--m_users > 0) {
    return;
  }
  if (m_box == nullptr) {
    delete this;
  }
  // Otherwise the handle is open or closing: its close callback frees us
  // (after the child's exit, or when the loop closes).
}

void process_state::exited(int returncode) {
  m_returncode = returncode;
  m_exit_waiters.signal_all();
  if (!m_close_started) {
    m_close_started = true;
    uv_close(m_box->uv_handle(), &on_close);
  }
}

void process_state::on_exit(uv_process_t* h, int64_t exit_status, int term_signal) {
  reinterpret_cast<box*>(h)->owner->exited(term_signal != 0 ? -term_signal : static_cast<int>(exit_status));
}

void process_state::on_pidfd_readable(uv_poll_t* h, int /*status*/, int /*events*/) {
  auto* b = reinterpret_cast<box*>(h);
  if (const auto code = reap_exited(b->pidfd, b->owner->m_pid)) {
    b->owner->exited(*code);
  }
}

void process_state::on_close(uv_handle_t* h) {
  auto* b = reinterpret_cast<box*>(h);
  auto* self = b->owner;
  if (b->pidfd >= 0) {
    ::close(b->pidfd);
  }
  delete b;
  self->m_box = nullptr;
  self->m_exit_waiters.signal_all();
  if (self->m_users == 0) {
    delete self;
  }
}

pid_t process_state::close_at_loop_close(uv_handle_t* h) noexcept {
  auto* self = reinterpret_cast<box*>(h)->owner;
  self->m_close_started = true;
  uv_close(h, &on_close);
  return self->m_pid;
}

bool process_state::is_child_watch(const uv_handle_t* h) noexcept { return h->data == &k_child_watch_mark; }

template class counted_ref<process_state>;

void close_process_at_loop_close(uv_handle_t* h) noexcept { reap_in_background(process_state::close_at_loop_close(h)); }

bool close_child_watch_at_loop_close(uv_handle_t* h) noexcept {
  if (!process_state::is_child_watch(h)) {
    return false;
  }
  reap_in_background(process_state::close_at_loop_close(h));
  return true;
}

} // namespace simul::detail
