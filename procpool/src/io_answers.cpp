// The parent's side of a process pool: what workers answer and how they end
// (the I/O loop's thread; io_loop.hpp).
//
// worker_link::read (worker_link.cpp) decodes a worker's frames; here each
// answer completes the promise of the task at the front of that worker's
// line, with no lock held, so a continuation may submit more work. A
// worker's death, reported by the zygote, fails the task it ran and puts
// those sent behind it back in the queue.

#include "io_loop.hpp"

#include <simul/trace/detail/recorder.hpp>

#include <sys/wait.h>

#include <csignal>
#include <exception>
#include <string>
#include <tuple>
#include <utility>

namespace simul::detail::procpool {

namespace {
/// An error report's body: the exception's type name and its what(). Throws
/// if the message is malformed.
std::pair<std::string, std::string> read_error_report(in_message& in) {
  std::pair<std::string, std::string> out;
  out.first.resize(in.begin_blob());
  in.read_blob_body(out.first.data(), out.first.size());
  out.second.resize(in.begin_blob());
  in.read_blob_body(out.second.data(), out.second.size());
  return out;
}

std::string millis(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}
} // namespace

void io_loop::read_worker(worker_link& w, bool drain) {
  try {
    w.read(*this, drain);
  } catch (const std::exception& e) {
    // e.g. no memory for the frame a worker announced: its problem, never the parent's
    on_corrupt(w, std::string("its message could not be received (") + e.what() + ")");
  }
}

void io_loop::on_corrupt(worker_link& w, const std::string& reason) {
  if (w.kill_reason.empty()) {
    w.kill_reason = reason;
  }
  close_channel(w);
  w.state = worker_state::lost;
  send_kill(w, SIGKILL);
}

bool io_loop::on_answer(worker_link& w, const frame_header& header, const char* payload, std::vector<unique_fd>& fds) {
  const auto kind = static_cast<frame_kind>(header.kind);
  if (w.pid < 0 && header.fn != 0) {
    // A worker can answer before the zygote reports its pid; every answer carries it.
    w.pid = static_cast<pid_t>(header.fn);
    refresh_pids();
  }
  in_message in{payload, static_cast<std::size_t>(header.size), 0, &fds, 0};
  if (kind == frame_kind::init_error) {
    std::string type;
    std::string message;
    try {
      std::tie(type, message) = read_error_report(in);
    } catch (const std::exception&) {
      on_corrupt(w, "it sent a corrupt message");
      return false;
    }
    w.init_failed = true;
    break_pool(std::make_exception_ptr(remote_error(type, message)), "process_pool: the initializer failed in worker " +
                                                                         std::to_string(w.pid) + ": " + type + ": " +
                                                                         message);
    return true;
  }
  if (!w.answers_front(header.id)) {
    on_corrupt(w, "it answered a task it does not hold");
    return false;
  }
  auto task = w.finish_front();
  trace_worker_run(w.pid, header.run_begin, header.run_end);
  // Counters and the worker's state change before the future completes, so
  // whoever wakes on it sees them.
  const bool retiring = w.state == worker_state::idle && m_options.max_tasks_per_child != 0 &&
                        w.tasks_done >= m_options.max_tasks_per_child;
  m_queue.note_completed();
  if (retiring) {
    m_queue.note_recycled();
    // The replacement is forked first, so queued work never waits for a worker.
    retire(w);
    const auto status = m_queue.status();
    if (!status.broken && !status.destroying) {
      spawn_worker(); // std::map: `w` stays valid
    }
  }
  if (kind == frame_kind::result) {
    task.request.slot->deliver(in);
  } else {
    std::string type;
    std::string message;
    try {
      std::tie(type, message) = read_error_report(in);
    } catch (const std::exception& e) {
      type = "simul::serialization_error";
      message = std::string("the worker's error report was unreadable: ") + e.what();
    }
    task.request.slot->fail(std::make_exception_ptr(remote_error(type, message)));
  }
  return true;
}

void io_loop::requeue_behind_front(std::deque<running>& line, bool cancel, bool broken) {
  std::deque<queued> back;
  while (line.size() > 1) {
    auto task = std::move(line.back());
    line.pop_back();
    if (cancel) {
      task.request.slot->cancel("process_pool: the pool stopped before the task started");
    } else if (broken) {
      task.request.slot->fail(m_queue.broken_error()); // no lock held: its continuations may submit
    } else {
      back.push_front({task.id, std::move(task.request)});
    }
  }
  m_queue.put_back(std::move(back));
}

void io_loop::fail_dead_workers_task(worker_link& w, pid_t pid, int signal, int code, bool destroying) {
  auto line = w.take_line();
  // The tasks behind the one it ran never started: they go back first in
  // line (or end now, if the pool is going away).
  requeue_behind_front(line, destroying, m_queue.status().broken);
  if (line.empty()) {
    return;
  }
  auto& task = line.front();
  std::exception_ptr error;
  if (w.init_failed) {
    error = m_queue.broken_error();
  } else if (w.timed_out) {
    error = std::make_exception_ptr(timeout_error("process_pool: " + describe_task(task) + " ran past its timeout of " +
                                                  millis(task.timeout) + "; its worker " + std::to_string(pid) +
                                                  " was killed"));
    m_queue.note_timed_out();
  } else if (destroying) {
    error =
        std::make_exception_ptr(broken_executor("process_pool: the pool was destroyed while " + describe_task(task) +
                                                " ran; its worker " + std::to_string(pid) + " was stopped"));
  } else {
    auto text = describe_task(task);
    if (!w.kill_reason.empty()) {
      text += " (killed by the pool because " + w.kill_reason + ")";
    }
    error = std::make_exception_ptr(worker_crashed(pid, signal, code, text));
  }
  task.request.slot->fail(error);
}

void io_loop::worker_exited(std::uint64_t id, pid_t pid, int status) {
  auto it = m_workers.find(id);
  if (it == m_workers.end()) {
    return;
  }
  worker_link& w = it->second;
  if (w.pid < 0) {
    w.pid = pid;
  }
  // Everything it wrote before dying is already in the socket: read it first.
  read_worker(w, true);
  close_channel(w);

  const int signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  const auto before = m_queue.status();
  const bool expected = w.state == worker_state::retiring && w.holds_nothing();
  fail_dead_workers_task(w, pid, signal, code, before.destroying);
  const bool crashed = !expected && !w.timed_out && !before.destroying && !w.init_failed;
  std::string last =
      "worker " + std::to_string(pid) +
      (signal != 0 ? " killed by signal " + std::to_string(signal) : " exited with status " + std::to_string(code));
  if (!w.kill_reason.empty()) {
    last += " after " + w.kill_reason;
  }
  const bool was_retiring = w.state == worker_state::retiring;
  unregister_pool_fd(w.fd());
  m_workers.erase(it);
  refresh_pids();

  bool broken = before.broken;
  if (crashed) {
    m_queue.note_crashed();
    if (!broken) {
      count_crash(last);
      broken = m_queue.status().broken;
    }
  }
  const auto after = m_queue.status();
  const bool stopping_idle = after.stopping && after.empty;
  // A retired worker's replacement was forked when it retired, except while stopping.
  if (!broken && !before.destroying && !stopping_idle && !(was_retiring && expected)) {
    spawn_worker();
  }
}

void io_loop::count_crash(const std::string& last) {
  const auto now = pool_clock::now();
  m_crashes.push_back(now);
  while (!m_crashes.empty() && now - m_crashes.front() > m_options.restart_window) {
    m_crashes.pop_front();
  }
  if (m_crashes.size() > m_options.restart_limit) {
    break_pool(nullptr, "process_pool: " + std::to_string(m_crashes.size()) + " workers died within " +
                            millis(m_options.restart_window) + " (restart_limit " +
                            std::to_string(m_options.restart_limit) +
                            "); the pool is broken to stop a crash loop; last: " + last);
  }
}

} // namespace simul::detail::procpool
