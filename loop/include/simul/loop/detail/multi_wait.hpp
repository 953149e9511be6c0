#pragma once

// The awaiter under gather, wait and wait_for: one suspension on many tasks.
//
// It links itself to each child's completion and wakes its task when its
// condition holds. What a cancellation of the waiting task does depends on the
// combinator, as in asyncio: gather forwards it to the children, wait leaves
// them alone, wait_for forwards it to its one child.

#include <simul/loop/detail/task_base.hpp>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <vector>

namespace simul::detail {

class multi_wait final : public waiter {
 public:
  enum class mode : std::uint8_t {
    all_completed,   // wait(): every child done (or the deadline)
    first_completed, // wait(): any child done (or the deadline)
    first_exception, // wait(): any child failed, or all done (or the deadline)
    gather,          // gather(): all done, or the first child failed or was cancelled
    gather_settled,  // gather(return_exceptions): all done
    wait_for,        // wait_for(): the one child done; at the deadline cancel it and keep waiting
  };

  /// The caller keeps `children` alive (it holds their handles).
  multi_wait(std::vector<task_base*> children, mode m,
             std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);
  multi_wait(const multi_wait&) = delete;
  multi_wait& operator=(const multi_wait&) = delete;
  ~multi_wait();

  bool await_ready() noexcept;
  bool await_suspend(std::coroutine_handle<> h);
  /// Unlinks, disarms, then throws a pending cancellation of the waiting task.
  void await_resume();
  bool on_cancel() noexcept override;

  /// The first child that failed or was cancelled, in completion order (gather).
  [[nodiscard]] task_base* first_failure() const noexcept { return m_first_failure; }
  /// The deadline passed (wait, wait_for).
  [[nodiscard]] bool timed_out() const noexcept { return m_timed_out; }
  /// The waiting task was cancelled and the cancellation went to the children.
  [[nodiscard]] bool cancel_forwarded() const noexcept { return m_cancel_forwarded; }
  /// The children, as given (gather moves its list in rather than copy it).
  [[nodiscard]] std::vector<task_base*>& children() noexcept { return m_children; }
  [[nodiscard]] const std::vector<task_base*>& children() const noexcept { return m_children; }
  /// What the wait is for (format_tasks).
  [[nodiscard]] mode kind() const noexcept { return m_mode; }

 private:
  // A child's link when its embedded one is taken: `owner` is the multi_wait.
  using child_link = done_link;
  static void on_child_done(done_link* link, task_base* child) noexcept;
  static void on_deadline(timer_entry* e) noexcept;
  [[nodiscard]] bool satisfied() const noexcept;
  void note_done(task_base& child) noexcept;
  void detach() noexcept;

  std::vector<task_base*> m_children;
  std::vector<child_link> m_links;
  std::optional<std::chrono::steady_clock::time_point> m_deadline;
  timer_entry m_timer;
  task_base* m_first_failure = nullptr;
  std::size_t m_done = 0;
  mode m_mode;
  bool m_suspended = false;
  bool m_timed_out = false;
  bool m_cancel_forwarded = false;
  bool m_woken = false;
};

} // namespace simul::detail
