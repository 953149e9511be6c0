// format_tasks / print_tasks: a tree of await chains (format_tasks.hpp).
//
// What a task awaits is read from its current waiter: tasks, gathers and
// sleeps expose what the tree needs (the awaited task, the children, the
// deadline); every other waiter is named from its type, so an awaitable
// needs no code of its own to appear in the report.

#include "loop_internal.hpp"

#include <simul/loop/detail/multi_wait.hpp>
#include <simul/loop/format_tasks.hpp>
#include <simul/loop/sleep.hpp>
#include <simul/loop/task_handle.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <typeinfo>
#include <unordered_set>
#include <vector>

namespace simul {

namespace detail {

namespace {

// Nested chains stop here (a deeper program is still readable from the top).
constexpr int k_max_depth = 16;

// What the awaitables that need no accessor are, by their type's name.
std::string describe_by_type(const waiter& w) {
  const auto name = demangle(typeid(w).name());
  struct known {
    std::string_view part;
    const char* text;
  };
  static constexpr known table[] = {
      {"future_awaiter", "a simul::future (a pool's result or a promise)"},
      {"list_waiter", "a lock, event, condition, semaphore, barrier or queue"},
      {"io_waiter", "a stream read or write"},
      {"read_awaiter", "a stream read"},
      {"request_awaiter", "a DNS lookup, a connect or a socket request"},
      {"fs_wait", "a file operation"},
      {"fd_wait", "a descriptor to become readable or writable"},
      {"join_awaiter", "the tasks of a task_group"},
      {"next_awaiter", "as_completed's next task"},
  };
  for (const auto& k : table) {
    if (name.find(k.part) != std::string::npos) {
      return k.text;
    }
  }
  return name;
}

const char* describe_mode(multi_wait::mode m) {
  switch (m) {
  case multi_wait::mode::all_completed:
    return "wait (all completed) on";
  case multi_wait::mode::first_completed:
    return "wait (first completed) on";
  case multi_wait::mode::first_exception:
    return "wait (first exception) on";
  case multi_wait::mode::gather:
    return "gather of";
  case multi_wait::mode::gather_settled:
    return "gather (return_exceptions) of";
  case multi_wait::mode::wait_for:
    return "wait_for on";
  }
  return "wait on";
}

std::string milliseconds_left(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration<double, std::milli>(deadline - std::chrono::steady_clock::now()).count();
  char text[64];
  std::snprintf(text, sizeof text, "%.1f ms left", std::max(left, 0.0));
  return text;
}

class tree_writer {
 public:
  explicit tree_writer(std::string& out) : m_out(out) {}

  void task(const task_base& t, int indent, int depth) {
    line(indent);
    m_out += "Task #" + std::to_string(t.id());
    if (auto name = t.name(); !name.empty()) {
      m_out += " '" + name + "'";
    }
    if (auto where = describe_location(t.where()); !where.empty()) {
      m_out += " (created at " + where + ")";
    }
    m_out += '\n';
    if (!m_on_path.insert(&t).second) {
      line(indent + 2);
      m_out += "... (a cycle: this task is already above)\n";
      return;
    }
    awaits(t, indent + 2, depth);
    m_on_path.erase(&t);
  }

 private:
  void line(int indent) { m_out.append(static_cast<std::size_t>(indent), ' '); }

  void awaits(const task_base& t, int indent, int depth) {
    const waiter* w = t.current_waiter();
    line(indent);
    if (w == nullptr) {
      if (&t == current_task_or_null()) {
        m_out += "running (the caller)\n";
      } else if (!t.started()) {
        m_out += "not started yet\n";
      } else {
        m_out += "ready to run\n";
      }
      return;
    }
    if (const auto* on_task = dynamic_cast<const task_wait_base*>(w)) {
      m_out += "awaits task\n";
      nested(*on_task->awaited(), indent + 2, depth);
    } else if (const auto* many = dynamic_cast<const multi_wait*>(w)) {
      const auto& children = many->children();
      m_out += std::string("awaits ") + describe_mode(many->kind()) + " " + std::to_string(children.size()) +
               (children.size() == 1 ? " task\n" : " tasks\n");
      for (const auto* child : children) {
        if (!child->done()) {
          nested(*child, indent + 2, depth);
        }
      }
    } else if (const auto* nap = dynamic_cast<const sleep_awaiter*>(w)) {
      m_out += "awaits a sleep, " + milliseconds_left(nap->deadline()) + "\n";
    } else {
      m_out += "awaits " + describe_by_type(*w) + "\n";
    }
  }

  void nested(const task_base& t, int indent, int depth) {
    if (depth + 1 >= k_max_depth) {
      line(indent);
      m_out += "... (deeper chains cut)\n";
      return;
    }
    task(t, indent, depth + 1);
  }

  std::string& m_out;
  std::unordered_set<const task_base*> m_on_path;
};

// The tasks another task awaits (directly, or in a gather or wait).
std::unordered_set<const task_base*> awaited_tasks(const std::vector<basic_task_handle>& tasks) {
  std::unordered_set<const task_base*> out;
  for (const auto& handle : tasks) {
    const waiter* w = handle.base().current_waiter();
    if (const auto* on_task = dynamic_cast<const task_wait_base*>(w)) {
      out.insert(on_task->awaited());
    } else if (const auto* many = dynamic_cast<const multi_wait*>(w)) {
      out.insert(many->children().begin(), many->children().end());
    }
  }
  return out;
}

} // namespace

std::string format_task(const task_base& task, int indent) {
  std::string out;
  tree_writer(out).task(task, indent, 0);
  return out;
}

} // namespace detail

std::string format_tasks(event_loop& loop) {
  if (loop.is_running() && detail::running_loop_or_null() != &loop) {
    throw error("format_tasks: called from a thread other than the loop's while it runs (use call_soon_threadsafe)");
  }
  const auto tasks = all_tasks(loop);
  std::vector<const detail::task_base*> pending;
  for (const auto& handle : tasks) {
    if (!handle.base().done()) {
      pending.push_back(&handle.base());
    }
  }
  if (pending.empty()) {
    return "No pending tasks.\n";
  }
  std::string out = std::to_string(pending.size()) + (pending.size() == 1 ? " pending task" : " pending tasks") +
                    " (a task is shown under the task that awaits it):\n";
  const auto awaited = detail::awaited_tasks(tasks);
  std::vector<const detail::task_base*> roots;
  for (const auto* t : pending) {
    if (!awaited.contains(t)) {
      roots.push_back(t);
    }
  }
  if (roots.empty()) { // every task awaits another: a cycle; show them all
    roots = pending;
  }
  std::sort(roots.begin(), roots.end(), [](const auto* a, const auto* b) { return a->id() < b->id(); });
  for (const auto* t : roots) {
    out += detail::format_task(*t, 0);
  }
  return out;
}

void print_tasks(event_loop& loop, std::FILE* out) {
  const auto text = format_tasks(loop);
  std::fwrite(text.data(), 1, text.size(), out);
  std::fflush(out);
}

} // namespace simul
