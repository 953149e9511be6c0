// Signal handlers on the loop, and the Ctrl-C hook of simul::run.
//
// The loop has no slot for per-loop I/O state, so handlers live in one
// process-wide table keyed by (libuv loop, signal). A loop that closes hands
// each of our handles to close_signal_at_loop_close (their `data` marks
// them), which takes the entry out of the table and frees it.

#include "io/io_internal.hpp"

#include <simul/loop/detail/sigint.hpp>
#include <simul/loop/io/signals.hpp>
#include <simul/loop/task_handle.hpp>

#include <csignal>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

namespace simul {

namespace detail {
namespace {

struct signal_entry {
  uv_signal_t handle{}; // first: the handle's address is the entry's
  event_loop* loop = nullptr;
  int sig = 0;
  std::function<void()> callback;
};

/// What `data` of an entry's handle points to, to tell it from other signal handles.
constexpr char k_entry_mark = 0;

struct signal_table {
  std::mutex mutex;
  // An entry of a loop still open at exit stays: the loop may still use it.
  std::map<std::pair<uv_loop_t*, int>, signal_entry*> entries;
};

signal_table& table() {
  static signal_table t;
  return t;
}

/// The entry for (loop, sig), or null. Caller holds the mutex.
signal_entry* find_entry(signal_table& t, event_loop& loop, int sig) {
  const auto it = t.entries.find({uv_loop(loop), sig});
  return it == t.entries.end() ? nullptr : it->second;
}

void check_signal(int sig) {
  if (sig <= 0 || sig >= NSIG) {
    throw error("add_signal_handler: invalid signal number " + std::to_string(sig));
  }
  if (sig == SIGKILL || sig == SIGSTOP) {
    throw error("add_signal_handler: signal " + std::to_string(sig) + " (" + strsignal(sig) + ") cannot be caught");
  }
}

void on_signal(uv_signal_t* h, int) {
  auto* e = reinterpret_cast<signal_entry*>(h);
  // A copy: the callback may replace or remove its own handler.
  auto callback = e->callback;
  auto* loop = e->loop;
  try {
    callback();
  } catch (...) {
    report(*loop, "Exception in signal handler for signal " + std::to_string(h->signum), std::current_exception());
  }
}

void close_entry(signal_entry* e) {
  uv_signal_stop(&e->handle);
  uv_close(reinterpret_cast<uv_handle_t*>(&e->handle),
           [](uv_handle_t* h) { delete reinterpret_cast<signal_entry*>(h); });
}

// ---- the Ctrl-C hook of simul::run ----

struct sigint_box {
  uv_signal_t handle{}; // first
  task_base* main = nullptr;
  int received = 0;
};

void on_sigint(uv_signal_t* h, int) {
  auto* box = reinterpret_cast<sigint_box*>(h);
  if (++box->received == 1) {
    if (!box->main->done()) {
      box->main->cancel("interrupted by SIGINT (Ctrl-C)");
    }
    return;
  }
  // A second Ctrl-C while the main task unwinds: die the default way.
  std::signal(SIGINT, SIG_DFL);
  std::raise(SIGINT);
}

} // namespace
} // namespace detail

void add_signal_handler(event_loop& loop, int sig, std::function<void()> callback) {
  detail::check_signal(sig);
  if (loop.is_closed()) {
    throw error("add_signal_handler: the event loop is closed");
  }
  if (!callback) {
    throw error("add_signal_handler: the callback is empty");
  }
  auto& t = detail::table();
  std::lock_guard lock(t.mutex);
  if (auto* e = detail::find_entry(t, loop, sig); e != nullptr) {
    e->callback = std::move(callback);
    return;
  }
  auto* e = new detail::signal_entry();
  e->loop = &loop;
  e->sig = sig;
  e->callback = std::move(callback);
  uv_signal_init(detail::uv_loop(loop), &e->handle);
  e->handle.data = const_cast<char*>(&detail::k_entry_mark);
  if (const int rc = uv_signal_start(&e->handle, &detail::on_signal, sig); rc < 0) {
    detail::close_entry(e);
    detail::throw_io_error(rc, "add_signal_handler", "signal " + std::to_string(sig));
  }
  // A handler alone does not keep the loop busy (asyncio's do not either).
  uv_unref(reinterpret_cast<uv_handle_t*>(&e->handle));
  try {
    t.entries[{detail::uv_loop(loop), sig}] = e;
  } catch (...) {
    detail::close_entry(e);
    throw;
  }
}

void add_signal_handler(int sig, std::function<void()> callback) {
  add_signal_handler(detail::running_loop_checked("add_signal_handler"), sig, std::move(callback));
}

bool remove_signal_handler(event_loop& loop, int sig) {
  if (sig <= 0 || sig >= NSIG) {
    throw error("remove_signal_handler: invalid signal number " + std::to_string(sig));
  }
  auto& t = detail::table();
  std::lock_guard lock(t.mutex);
  auto* e = detail::find_entry(t, loop, sig);
  if (e == nullptr) {
    return false;
  }
  t.entries.erase({detail::uv_loop(loop), sig});
  detail::close_entry(e);
  return true;
}

bool remove_signal_handler(int sig) {
  return remove_signal_handler(detail::running_loop_checked("remove_signal_handler"), sig);
}

namespace detail {

bool close_signal_at_loop_close(uv_handle_t* h) noexcept {
  if (h->data != &k_entry_mark) {
    return false;
  }
  auto* e = reinterpret_cast<signal_entry*>(h);
  auto& t = table();
  {
    std::lock_guard lock(t.mutex);
    t.entries.erase({h->loop, e->sig});
  }
  close_entry(e);
  return true;
}

sigint_scope::sigint_scope(event_loop& loop, task_base& main) : m_loop(&loop) {
  struct sigaction current {};
  if (sigaction(SIGINT, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) {
    return; // the program handles SIGINT itself
  }
  auto* box = new sigint_box();
  box->main = &main;
  main.add_ref();
  uv_signal_init(uv_loop(loop), &box->handle);
  if (uv_signal_start(&box->handle, &on_sigint, SIGINT) < 0) {
    main.release();
    uv_close(reinterpret_cast<uv_handle_t*>(&box->handle),
             [](uv_handle_t* h) { delete reinterpret_cast<sigint_box*>(h); });
    return;
  }
  uv_unref(reinterpret_cast<uv_handle_t*>(&box->handle));
  m_handle = box;
}

sigint_scope::~sigint_scope() {
  auto* box = static_cast<sigint_box*>(m_handle);
  if (box == nullptr) {
    return;
  }
  box->main->release();
  box->main = nullptr;
  if (m_loop->is_closed()) {
    delete box; // the loop closed the handle itself
    return;
  }
  uv_signal_stop(&box->handle);
  uv_close(reinterpret_cast<uv_handle_t*>(&box->handle),
           [](uv_handle_t* h) { delete reinterpret_cast<sigint_box*>(h); });
}

} // namespace detail
} // namespace simul
