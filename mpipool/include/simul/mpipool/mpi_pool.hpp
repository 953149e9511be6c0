#pragma once

// simul::mpi_pool: the process pool's interface, with its workers on the
// ranks of an MPI job (mpi4py.futures' MPICommExecutor, for C++).
//
//   int square(int x) { return x * x; }
//   int main(int argc, char** argv) {
//     simul::mpi_pool pool(argc, argv, {.pipeline_depth = 16});  // worker ranks serve here, then exit
//     simul::future<int> f = pool.submit(square, 7);              // rank 0 only from here on
//     std::vector<int> all = pool.map(square, numbers, {.chunksize = 256});
//   }
//   $ mpirun -n 4 ./prog        # rank 0 is the client, ranks 1..3 run the tasks
//
// The contract:
// - Every rank runs the same program. Code before the pool's construction
//   runs on every rank. On rank 0 the constructor returns and the program
//   goes on as the client; on every other rank it serves tasks until rank 0
//   shuts the pool down and then ends the process with status 0 (after
//   MPI_Finalize, which waits for rank 0 to reach its own at exit). With
//   `keep_ranks`, the worker ranks wait for rank 0's next pool instead.
// - The first pool initialises MPI (unless the program did) and checks that
//   every rank runs the same build of the executable (its build id, or a
//   hash of it): a mismatch throws `mpi_error` on rank 0, naming the rank and
//   host. A function travels as its offset from the executable's load address.
// - Tasks follow process_pool's rules, checked at compile time: a plain
//   function or captureless lambda in the executable, arguments and results
//   that are values. They travel in process_pool's wire format. A
//   `shared_buffer` names memory on one machine and is refused (a compile
//   error as an argument, `serialization_error` inside another value).
// - An exception in a task arrives as `mpi_remote_error` (a `remote_error`
//   with the rank and host it ran on). A task that crashes its process ends
//   the whole MPI job, as MPI does; with `isolate` it fails with
//   `mpi_worker_crashed` and the rank goes on serving.
// - Rank 0 runs one progress thread that sends and receives without
//   blocking; an idle pool sleeps on every rank.
//
// Thread-safety: on rank 0 every member function may be called from any
// thread at once, except that the destructor must not race with anything.
// Futures complete on the progress thread, so `then` / `on_ready` callbacks
// run there: keep them short, and never call `shutdown({.wait = true})` from
// one (it throws). One pool at a time per process.
// Lifetime: the destructor cancels queued work and waits for the tasks
// already sent; every future it leaves is complete.

#include <simul/core/executor.hpp>
#include <simul/core/future.hpp>
#include <simul/core/map.hpp>
#include <simul/mpipool/errors.hpp>
#include <simul/mpipool/options.hpp>
#include <simul/procpool/detail/code_address.hpp>
#include <simul/procpool/detail/submit.hpp>
#include <simul/procpool/options.hpp>
#include <simul/procpool/process_pool.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace simul {

namespace detail {
class mpi_client;

template <class T>
inline constexpr bool mpi_wire_type = !std::is_same_v<std::remove_cvref_t<T>, shared_buffer>;

template <class Fn, class... Args>
consteval bool check_mpi_task() {
  static_assert((mpi_wire_type<Args> && ...),
                "simul::mpi_pool: a shared_buffer names memory on one machine and cannot travel to another rank; "
                "pass its bytes (a std::vector) instead");
  return check_task<Fn, Args...>();
}

/// The header's room at the front of a task's payload (see src/messages.hpp).
inline constexpr std::size_t k_mpi_header_size = 56;

/// A payload with room for the message header, never using memfds.
inline out_message mpi_payload() {
  out_message out;
  out.shm_threshold = ~std::size_t{0};
  out.bytes.resize(k_mpi_header_size);
  return out;
}

/// About the bytes `value` takes in a task's payload: exact for contiguous
/// payloads (a vector of numbers, a string), a guess for the rest. Lets a
/// big task be encoded into a buffer of the right size first time.
template <class T>
std::size_t wire_size_hint(const T& value) {
  if constexpr (is_contiguous_blob<T>::value) {
    return value.size() * sizeof(typename T::value_type) + 16;
  } else {
    return sizeof(T) + 16;
  }
}

} // namespace detail

/// A pool whose workers are the other ranks of an MPI job. Models `simul::executor`.
///
/// Thread-safety and Lifetime: see the file comment.
class mpi_pool {
 public:
  /// Initialises MPI if needed (with `argc` / `argv`, which MPI may edit),
  /// checks the build on every rank, and opens the pool. On a worker rank it
  /// never returns (see the file comment). Throws `mpi_error` if MPI fails or
  /// a rank runs another build, `simul::error` if the job has a single rank
  /// or the options are wrong (a `task_timeout` without `isolate`), and
  /// `simul::error` if another mpi_pool is open in this process.
  mpi_pool(int& argc, char**& argv, mpi_pool_options options = {});
  /// The same without the command line (MPI_Init with no arguments).
  explicit mpi_pool(mpi_pool_options options = {});
  ~mpi_pool();
  mpi_pool(const mpi_pool&) = delete;
  mpi_pool& operator=(const mpi_pool&) = delete;

  /// This process's rank (0 for the client, as the constructor returns only there).
  [[nodiscard]] int rank() const noexcept;
  /// The number of ranks in the job, rank 0 included.
  [[nodiscard]] int size() const noexcept;
  /// The number of worker ranks (`size() - 1`).
  [[nodiscard]] std::size_t workers() const noexcept;
  /// The host name of rank `r` (0 <= r < size()).
  [[nodiscard]] const std::string& host(int r) const;
  /// Rank `r`'s clock against this rank's, as estimated when MPI started
  /// (1 <= r < size()); see `mpi_clock_estimate`. Throws `std::out_of_range`
  /// for another `r`.
  [[nodiscard]] mpi_clock_estimate clock_estimate(int r) const;

  /// Runs `fn(args...)` on a worker rank and returns a future of the result.
  /// Throws `broken_executor` after `shutdown()`, `code_address_error` if `fn`
  /// is a function outside the executable, `serialization_error` if an
  /// argument cannot travel. Thread-safety: any thread.
  template <class F, class... Args>
  requires(!std::is_same_v<std::remove_cvref_t<F>, task_options>) auto submit(F&& fn, Args&&... args) {
    return submit_with(std::chrono::nanoseconds{0}, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// `submit` with per-task options (a timeout of its own; needs `isolate`).
  template <class F, class... Args>
  auto submit(const task_options& options, F&& fn, Args&&... args) {
    return submit_with(options.timeout, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// `fn(item)` for every item, in chunks of `chunksize` items per task;
  /// results in input order. The first exception in input order is rethrown
  /// after the chunks not yet started are cancelled; past `timeout`,
  /// `timeout_error` likewise. Thread-safety: any thread.
  template <class F, std::ranges::input_range R>
  auto map(F&& fn, R&& items, map_options options = {});

  /// A lazy `map`: a range whose iteration submits chunks ahead (at most
  /// `max_inflight`; 0: two per worker rank) and yields results in input order.
  /// Lifetime: an lvalue range must outlive the returned range; an rvalue is moved in.
  template <class F, std::ranges::input_range R>
  auto imap(F&& fn, R&& items, imap_options options = {});

  /// Like `imap`, but yields results in the order they complete.
  template <class F, std::ranges::input_range R>
  auto imap_unordered(F&& fn, R&& items, imap_options options = {});

  /// Stops accepting work. With `wait`, blocks until queued and running work
  /// is done and the worker ranks have been released; with `cancel_pending`,
  /// queued work completes as cancelled first. Idempotent. Throws
  /// `simul::error` if called with `wait` from a callback on the progress thread.
  void shutdown(shutdown_options options = {});

  /// True after `shutdown()` (or once the pool broke).
  [[nodiscard]] bool is_shutdown() const noexcept;

  /// Counters; see `mpi_pool_stats`.
  [[nodiscard]] mpi_pool_stats stats() const;

  /// The options the pool was built with.
  [[nodiscard]] const mpi_pool_options& options() const noexcept;

 private:
  template <class Pool, class Fn>
  friend struct detail::message_chunk_submitter;

  void open(int* argc, char*** argv, const mpi_pool_options& options);

  template <class F, class... Args>
  auto submit_with(std::chrono::nanoseconds timeout, F&& fn, Args&&... args) {
    using Fn = std::decay_t<F>;
    static_assert(detail::check_mpi_task<Fn, std::decay_t<Args>...>());
    detail::task_request request;
    // Every rank runs this executable at its own address: a plain function
    // travels as its offset from the executable's load address (even when
    // simul itself is a shared library); one outside it is refused here.
    request.naming = detail::code_naming::executable;
    request.payload = payload_for((std::size_t{0} + ... + detail::wire_size_hint(args)));
    request.timeout = timeout;
    auto result = detail::pack_call(request, detail::code_offset(&detail::run_call<Fn, std::decay_t<Args>...>),
                                    static_cast<const Fn&>(fn), args...);
    enqueue(std::move(request), detail::future_access::state(result));
    return result;
  }

  template <class F, class Item>
  auto submit_chunk(const F& fn, const std::vector<Item>& chunk) {
    using Fn = std::decay_t<F>;
    detail::task_request request;
    request.naming = detail::code_naming::executable;
    request.payload = detail::mpi_payload();
    auto result = detail::pack_chunk(request, detail::code_offset(&detail::run_chunk<Fn, Item>),
                                     static_cast<const Fn&>(fn), chunk);
    enqueue(std::move(request), detail::future_access::state(result));
    return result;
  }

  /// An empty payload with room for the header; for `size_hint` bytes of
  /// arguments or more (a big task), a buffer that holds them, reused from
  /// an earlier big task when one has left.
  detail::out_message payload_for(std::size_t size_hint);

  /// Checks the payload (no descriptors) and queues it; throws
  /// `broken_executor` after shutdown. `state` is the task's future's.
  void enqueue(detail::task_request&& request, detail::state_base& state);

  mpi_pool_options m_options;
  int m_rank = 0;
  int m_size = 1;
  std::unique_ptr<detail::mpi_client> m_client;
};

static_assert(executor<mpi_pool>);

} // namespace simul

#include <simul/mpipool/imap.hpp>
