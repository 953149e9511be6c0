#pragma once

// What every pool of processes does to a task before it leaves (internal):
// the compile-time rules a task must meet, each with a message that says
// why, and the packing of a call or a chunk into a task_request. Shared by
// process_pool and mpi_pool, so the rules and their messages exist once.
//
// Thread-safety: pure functions of their arguments.
// Lifetime: a packed request owns copies of the encoded arguments and the
// promise whose future the packing returns.

#include <simul/core/future.hpp>
#include <simul/procpool/detail/task.hpp>

#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul::detail {

/// The rules for a task `Fn(Args...)` sent to another process: each broken
/// rule is a static_assert that says why.
template <class Fn, class... Args>
consteval bool check_task() {
  static_assert(is_plain_function_pointer<Fn> || is_stateless_callable<Fn>,
                "simul::process_pool: a task must be a plain function or a captureless lambda; captures cannot "
                "cross a process boundary (pass the values as arguments)");
  static_assert((!std::is_pointer_v<Args> && ...),
                "simul::process_pool: raw pointer arguments cannot cross a process boundary (pass values: "
                "std::string instead of const char*, std::vector instead of T*)");
  static_assert((wire_type<Args> && ...),
                "simul::process_pool: an argument type cannot be serialized (make it trivially copyable, a "
                "standard container of such, or give it serialize(Archive&))");
  constexpr bool callable = std::is_invocable_v<Fn&, Args&&...>;
  static_assert(callable, "simul::process_pool: the task cannot be called with its arguments passed as values (a "
                          "reference parameter cannot send changes back from another process)");
  if constexpr (callable) {
    using R = std::invoke_result_t<Fn&, Args&&...>;
    static_assert(!std::is_reference_v<R>, "simul::process_pool: a task cannot return a reference; return a value");
    static_assert(!std::is_pointer_v<R>,
                  "simul::process_pool: a task cannot return a raw pointer; it would point into another process");
    static_assert(std::is_void_v<R> || wire_type<R>,
                  "simul::process_pool: the task's result type cannot be serialized (make it trivially copyable, a "
                  "standard container of such, or give it serialize(Archive&))");
  }
  return true;
}

/// Fills `request` for `fn(args...)`: the callable and the arguments are
/// encoded after whatever `request.payload` already holds (a pool's header
/// room or threshold), `trampoline` names `run_call<Fn, Args...>` in the
/// pool's numbering of code, and a plain function is named by
/// `request.naming`. Returns the future of the result; throws
/// `code_address_error` (nothing queued) if the function has no name there.
template <class Fn, class... Args>
auto pack_call(task_request& request, std::uint64_t trampoline, const Fn& fn, const Args&... args) {
  using R = std::invoke_result_t<Fn&, Args&&...>;
  request.trampoline = trampoline;
  encode_callable(request.payload, fn, request.naming);
  (encode<Args>(request.payload, args), ...);
  auto slot = std::make_unique<promise_slot<R>>();
  auto result = slot->get_future();
  request.slot = std::move(slot);
  request.describe = &describe_callable<Fn>;
  return result;
}

/// As pack_call, for `fn` over every item of `chunk` (`run_chunk<Fn, Item>`).
template <class Fn, class Item>
auto pack_chunk(task_request& request, std::uint64_t trampoline, const Fn& fn, const std::vector<Item>& chunk) {
  using Res = std::invoke_result_t<Fn&, Item&>;
  request.trampoline = trampoline;
  encode_callable(request.payload, fn, request.naming);
  encode<std::vector<Item>>(request.payload, chunk);
  auto slot = std::make_unique<promise_slot<std::vector<Res>>>();
  auto result = slot->get_future();
  request.slot = std::move(slot);
  request.describe = &describe_callable<Fn>;
  return result;
}

} // namespace simul::detail
