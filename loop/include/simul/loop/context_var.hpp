#pragma once

// simul::context_var<T>: task-local values, asyncio's contextvars.
//
//   inline simul::context_var<std::string> request_id("request_id");
//   auto token = request_id.set("r-17");     // in this task from now on
//   ... request_id.get() ...                 // "r-17", here and in tasks created from here
//   request_id.reset(token);                 // back to what it was
//
// Every task has a context: the values of every context_var as seen from it.
// A task starts with a copy of the context of whoever created it (the
// creating task, or the thread that called `create_task` / `run`), so a
// value set before `create_task` is seen by the new task, and a value the
// new task sets is seen by it (and the tasks it creates) only.
// `to_thread(f)` and `loop.run_in_executor(ex, f)` run `f` in a copy of the
// caller's context, as asyncio's `to_thread` does. Outside any task, the
// calling thread has a context of its own.
//
// Callbacks (`call_soon`, `call_later`) run in the context of the thread
// running the loop, not in the one they were scheduled from.
//
// Thread-safety: `get`/`set`/`reset` act on the calling task's (or thread's)
// context; a context_var object itself may be shared by every thread.
// Lifetime: a context_var is usually a global or a static; values live as
// long as some context holds them.

#include <simul/core/error.hpp>
#include <simul/loop/detail/context.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace simul {

/// A context_var was read that has no value and no default (asyncio's LookupError).
class lookup_error : public error {
 public:
  explicit lookup_error(const std::string& message) : error(message) {}
};

namespace detail {
std::uint64_t next_context_var_id() noexcept;
const void* current_context_owner() noexcept;
} // namespace detail

/// A task-local variable (asyncio.ContextVar). See the file comment.
///
/// Thread-safety: see the file comment. Lifetime: must outlive its tokens' use.
template <class T>
class context_var {
 public:
  /// What `set` returns, to give to `reset` (contextvars.Token).
  class token {
   public:
    /// The value before the `set` (none if there was none).
    [[nodiscard]] std::optional<T> old_value() const {
      if (!m_old) {
        return std::nullopt;
      }
      return *static_cast<const T*>(m_old.get());
    }

   private:
    friend class context_var;
    token(std::uint64_t var, const void* owner, std::shared_ptr<const void> old) noexcept
        : m_var(var), m_owner(owner), m_old(std::move(old)) {}
    std::uint64_t m_var;
    const void* m_owner;
    std::shared_ptr<const void> m_old;
    bool m_used = false;
  };

  /// A variable without a default: `get()` throws `lookup_error` until set.
  explicit context_var(std::string name) : m_name(std::move(name)), m_id(detail::next_context_var_id()) {}
  /// A variable whose `get()` gives `fallback` until set.
  context_var(std::string name, T fallback)
      : m_name(std::move(name)), m_id(detail::next_context_var_id()), m_default(std::move(fallback)) {}
  context_var(const context_var&) = delete;
  context_var& operator=(const context_var&) = delete;

  [[nodiscard]] const std::string& name() const noexcept { return m_name; }

  /// The value in the current context, else the default. Throws
  /// `lookup_error` if there is neither.
  [[nodiscard]] T get() const {
    if (const auto* v = find()) {
      return *static_cast<const T*>(v->get());
    }
    if (m_default) {
      return *m_default;
    }
    throw lookup_error("context_var '" + m_name + "' has no value in this context and no default");
  }
  /// The value in the current context, else `fallback` (not the default).
  [[nodiscard]] T get(T fallback) const {
    if (const auto* v = find()) {
      return *static_cast<const T*>(v->get());
    }
    return fallback;
  }

  /// Sets the value in the current context; the token takes it back.
  token set(T value) {
    auto& slot = detail::current_context_slot();
    auto fresh = std::make_shared<detail::context_data>();
    std::shared_ptr<const void> old;
    if (slot) {
      fresh->entries.reserve(slot->entries.size() + 1);
      for (const auto& e : slot->entries) {
        if (e.first == m_id) {
          old = e.second;
        } else {
          fresh->entries.push_back(e);
        }
      }
    }
    fresh->entries.emplace_back(m_id, std::make_shared<const T>(std::move(value)));
    slot = std::move(fresh);
    return token(m_id, detail::current_context_owner(), std::move(old));
  }

  /// Puts back the value the variable had before `t`'s `set` (none: unset).
  /// Throws `simul::error` for a token of another variable, one already
  /// used, or one made in another context (another task or thread).
  void reset(token& t) {
    if (t.m_var != m_id) {
      throw error("context_var::reset: the token belongs to another variable");
    }
    if (t.m_used) {
      throw error("context_var::reset: the token was already used");
    }
    if (t.m_owner != detail::current_context_owner()) {
      throw error("context_var::reset: the token was made in another context (task or thread)");
    }
    auto& slot = detail::current_context_slot();
    auto fresh = std::make_shared<detail::context_data>();
    if (slot) {
      for (const auto& e : slot->entries) {
        if (e.first != m_id) {
          fresh->entries.push_back(e);
        }
      }
    }
    if (t.m_old) {
      fresh->entries.emplace_back(m_id, t.m_old);
    }
    slot = std::move(fresh);
    t.m_used = true;
  }

 private:
  [[nodiscard]] const std::shared_ptr<const void>* find() const {
    auto ctx = detail::current_context();
    // The map stays alive in the slot while we copy out of it: nothing runs
    // in between on this thread.
    return ctx ? ctx->find(m_id) : nullptr;
  }

  std::string m_name;
  std::uint64_t m_id;
  std::optional<T> m_default;
};

} // namespace simul
