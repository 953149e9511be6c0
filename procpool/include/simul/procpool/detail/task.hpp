#pragma once

// What the pool sends to a worker, and how the answer reaches a future (internal).
//
// A task is a trampoline id plus a payload. The trampoline is a function
// template instantiated for the callable's type and the argument types: the
// worker (the same binary) calls it through its code id, and it decodes the
// callable and the arguments, runs the call and encodes the result. A plain
// function travels as its own code id; a captureless lambda travels as
// nothing at all, since its type alone says what to run. How code ids are
// made is the pool's `code_naming`: relative to a function of the library
// (valid in forks of this process, for any code) or offsets from the
// executable's load address (valid in a fresh exec of the same build, for
// the executable's code only).
//
// The parent keeps a `task_slot` per task: it starts the promise, gives it the
// decoded result, or fails it.

#include <simul/core/future.hpp>
#include <simul/procpool/detail/code_address.hpp>
#include <simul/procpool/detail/codec/codec.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace simul::detail {

/// Runs in a worker: decodes a task from `in`, runs it, encodes the result to `out`.
using trampoline_fn = void (*)(in_message& in, out_message& out);

template <class F>
inline constexpr bool is_plain_function_pointer = std::is_pointer_v<F>&& std::is_function_v<std::remove_pointer_t<F>>;

/// A captureless lambda or an empty function object: its type says it all.
template <class F>
inline constexpr bool is_stateless_callable =
    std::is_class_v<F>&& std::is_empty_v<F>&& std::is_default_constructible_v<F>&& std::is_trivially_copyable_v<F>;

/// How a pool names code (trampolines, plain functions, the initializer) in its messages.
enum class code_naming : std::uint8_t {
  anchored,   ///< `code_id`: valid in forks of this process, for any code
  executable, ///< `code_offset`: valid in any process running this build, for the executable's code
};

/// The id of `fn` under `naming`. Throws `code_address_error` if `naming` is
/// `executable` and `fn` is not in the executable.
template <class FnPtr>
std::uint64_t name_code(FnPtr fn, code_naming naming) {
  return naming == code_naming::executable ? code_offset(fn) : code_id(fn);
}

/// The function that `name_code` named `id`. Throws `code_address_error` if
/// `naming` is `executable` and `id` is outside the executable's code.
template <class FnPtr>
FnPtr code_named(std::uint64_t id, code_naming naming) {
  return naming == code_naming::executable ? code_from_offset<FnPtr>(id) : code_address<FnPtr>(id);
}

/// The naming of the pool this process serves as a worker (`anchored` in
/// any other process): what `decode_callable` reads ids with.
code_naming worker_code_naming() noexcept;
/// Sets it: an MPI worker rank reads ids as executable offsets.
void set_worker_code_naming(code_naming naming) noexcept;

template <class F>
void encode_callable(out_message& out, const F& fn, code_naming naming = code_naming::anchored) {
  if constexpr (is_plain_function_pointer<F>) {
    out.put_pod(name_code(fn, naming));
  } else {
    (void)out;
    (void)fn;
    (void)naming;
  }
}

template <class F>
F decode_callable(in_message& in) {
  if constexpr (is_plain_function_pointer<F>) {
    return code_named<F>(in.get_pod<std::uint64_t>(), worker_code_naming());
  } else {
    (void)in;
    return F{};
  }
}

/// Encodes a task's result, which it may take: a contiguous result at least
/// `out.apart_threshold` big moves into `out.apart` instead of being copied.
template <class R>
void encode_result(out_message& out, R&& value) {
  using T = std::remove_cvref_t<R>;
  try {
    if constexpr (is_contiguous_blob<T>::value && !std::is_lvalue_reference_v<R>) {
      const std::size_t bytes = value.size() * sizeof(typename T::value_type);
      if (bytes >= out.apart_threshold && out.apart.data == nullptr) {
        auto owner = std::make_shared<const T>(std::move(value));
        out.put_apart(owner, owner->data(), bytes);
        return;
      }
    }
    encode(out, std::as_const(value));
  } catch (const std::exception& e) {
    throw serialization_error("the task's result (" + demangle(typeid(T).name()) +
                              ") could not be serialized: " + e.what());
  }
}

/// The trampoline for `fn(args...)`.
template <class F, class... Args>
void run_call(in_message& in, out_message& out) {
  F fn = decode_callable<F>(in);
  std::tuple<Args...> args{decode<Args>(in)...}; // braced: decoded left to right
  using R = std::invoke_result_t<F&, Args&&...>;
  if constexpr (std::is_void_v<R>) {
    std::apply(fn, std::move(args));
  } else {
    encode_result(out, std::apply(fn, std::move(args)));
  }
}

/// The trampoline for one chunk of `map`: `fn(item)` for every item.
template <class F, class Item>
void run_chunk(in_message& in, out_message& out) {
  F fn = decode_callable<F>(in);
  auto items = decode<std::vector<Item>>(in);
  using R = std::invoke_result_t<F&, Item&>;
  std::vector<R> results;
  results.reserve(items.size());
  for (auto& item : items) {
    results.push_back(fn(item));
  }
  encode_result(out, std::move(results));
}

/// The parent's end of one task.
class task_slot {
 public:
  task_slot() = default;
  task_slot(const task_slot&) = delete;
  task_slot& operator=(const task_slot&) = delete;
  virtual ~task_slot() = default;
  /// False if the consumer cancelled it first: it must not be sent.
  virtual bool start() = 0;
  /// Decodes the result and completes the future (decode errors fail it).
  virtual void deliver(in_message& in) noexcept = 0;
  virtual void fail(std::exception_ptr error) noexcept = 0;
  virtual void cancel(const std::string& why) noexcept = 0;
};

template <class R>
class promise_slot final : public task_slot {
 public:
  future<R> get_future() { return m_promise.get_future(); }
  bool start() override { return m_promise.set_running_or_notify_cancel(); }
  void deliver(in_message& in) noexcept override {
    try {
      if constexpr (std::is_void_v<R>) {
        m_promise.set_value();
      } else {
        m_promise.set_value(decode<R>(in));
      }
    } catch (...) {
      fail(std::current_exception());
    }
  }
  void fail(std::exception_ptr error) noexcept override {
    try {
      m_promise.set_exception(std::move(error));
    } catch (...) { // NOLINT(bugprone-empty-catch): already satisfied, nothing to give
    }
  }
  void cancel(const std::string& why) noexcept override {
    try {
      m_promise.set_cancelled(why);
    } catch (...) { // NOLINT(bugprone-empty-catch): already satisfied
    }
  }

 private:
  promise<R> m_promise;
};

/// One task on its way to a worker.
struct task_request {
  std::uint64_t trampoline = 0;
  code_naming naming = code_naming::anchored; ///< how `trampoline` and a plain function are named
  out_message payload;
  std::unique_ptr<task_slot> slot;
  std::chrono::nanoseconds timeout{0}; ///< 0: the pool's default
  std::string (*describe)() = nullptr; ///< what the task is, for error messages
};

template <class F>
std::string describe_callable() {
  return demangle(typeid(F).name());
}

} // namespace simul::detail
