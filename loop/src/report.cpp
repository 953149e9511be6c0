// Never silent: how the loop reports what it cannot hand to anyone (an
// exception from a callback, a task's error nobody retrieved): through the
// exception handler, stderr by default.

#include "loop_internal.hpp"

#include <cstdio>

namespace simul {

namespace detail {

void report(event_loop& loop, std::string message, std::exception_ptr error, std::string task,
            std::string where) noexcept {
  exception_context context;
  try {
    context.message = std::move(message);
    context.exception = std::move(error);
    context.task = std::move(task);
    context.where = std::move(where);
  } catch (...) {
  }
  loop.call_exception_handler(context);
}

void event_loop_detached_report(const std::string& message, std::exception_ptr error, const std::string& task,
                                const std::string& where) noexcept {
  try {
    std::fprintf(stderr, "simul: %s%s%s%s%s%s%s%s\n", message.c_str(), task.empty() ? "" : " [", task.c_str(),
                 task.empty() ? "" : "]", where.empty() ? "" : " (created at ", where.c_str(), where.empty() ? "" : ")",
                 error ? (": " + describe(error)).c_str() : "");
  } catch (...) {
  }
}

std::string describe_location(const detail::source_location& where) {
  if (where.line() == 0 && (where.file_name() == nullptr || where.file_name()[0] == '\0')) {
    return {};
  }
  std::string out = where.file_name();
  out += ':';
  out += std::to_string(where.line());
  if (where.function_name() != nullptr && where.function_name()[0] != '\0') {
    out += " (";
    out += where.function_name();
    out += ')';
  }
  return out;
}

} // namespace detail

void event_loop::set_exception_handler(exception_handler handler) { m_impl->handler = std::move(handler); }

void event_loop::call_exception_handler(const exception_context& context) noexcept {
  try {
    if (m_impl->handler) {
      m_impl->handler(*this, context);
    } else {
      default_exception_handler(*this, context);
    }
  } catch (...) {
    detail::event_loop_detached_report("the exception handler threw while reporting: " + context.message,
                                       std::current_exception(), context.task, context.where);
  }
}

void event_loop::default_exception_handler(event_loop&, const exception_context& context) {
  detail::event_loop_detached_report(context.message, context.exception, context.task, context.where);
}

void event_loop::set_debug(bool enabled) noexcept { m_impl->debug = enabled; }
bool event_loop::get_debug() const noexcept { return m_impl->debug; }
void event_loop::set_slow_callback_duration(std::chrono::nanoseconds limit) noexcept { m_impl->slow_callback = limit; }

} // namespace simul
