#pragma once

// What rank 0 and the worker ranks say to each other (private to the module).
//
// Every message is one MPI message on the pool's own communicator, tag
// k_tag: a 56-byte header, then a payload written with procpool's codec
// (detail/codec.hpp). Messages between two ranks arrive in the order they
// were sent (MPI's non-overtaking rule), which the protocol relies on:
//   rank 0 -> worker: open (a pool's settings), task*, close (park or exit)
//   worker -> rank 0: one answer per task: result | error | crashed | timed_out
// The header sits at the front of the buffer the payload is encoded into, so
// a message leaves and arrives without being copied into another buffer.
// A big contiguous result (k_send_apart or more) is not copied into its
// answer at all: the answer carries its tag and size, and the worker sends
// the bytes straight from the value's memory right after it, as one message
// of tag k_apart_tag (header.apart says how many bytes to expect).

#include <simul/mpipool/mpi_pool.hpp>
#include <simul/procpool/detail/codec/codec.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

namespace simul::detail {

inline constexpr int k_tag = 23;
inline constexpr int k_clock_tag = 24;                   // the handshake's clock pings
inline constexpr int k_apart_tag = 25;                   // a result's bytes sent apart
inline constexpr std::uint32_t k_mpi_magic = 0x4d4c4d53; // "SMLM"

enum class mpi_kind : std::uint32_t {
  open = 1,      // payload: session_settings
  task = 2,      // fn: trampoline offset; payload: callable + arguments
  close = 3,     // fn: 1 to end the process, 0 to wait for the next pool
  result = 10,   // payload: the encoded result
  error = 11,    // payload: type name, message
  crashed = 12,  // payload: pid, signal, exit status, task description
  timed_out = 13 // payload: message
};

struct mpi_header {
  std::uint32_t magic = k_mpi_magic;
  mpi_kind kind{};
  std::uint64_t id = 0;
  std::uint64_t fn = 0;
  std::int64_t timeout_ns = 0; ///< task: its limit (0: none)
  std::int64_t run_begin = 0;  ///< answers: when the rank ran the task (its steady clock, ns; for simul::trace)
  std::int64_t run_end = 0;
  std::uint64_t apart = 0; ///< result: the bytes that follow in a k_apart_tag message (0: none)
};
static_assert(sizeof(mpi_header) == 56);

/// What a worker rank needs to know about the pool it serves.
struct session_settings {
  std::uint32_t isolate = 0;
  std::uint32_t isolate_workers = 1;
  std::uint64_t shutdown_grace_ns = 0;
  std::uint32_t keep_worker_heap = 0;
  std::uint32_t unused = 0;
};

static_assert(sizeof(mpi_header) == k_mpi_header_size);

inline void set_header(out_message& out, const mpi_header& header) {
  std::memcpy(out.bytes.data(), &header, sizeof header);
}

/// The header of a received message; throws serialization_error if it is
/// too short or not one of ours.
mpi_header read_header(const char* data, std::size_t size);

/// Refuses a message that would need descriptors (a shared_buffer inside a
/// value): they name memory on this machine only.
void check_no_descriptors(const out_message& out, const char* what);

/// Refuses a message (or its blob apart) over MPI's 2 GiB message limit,
/// with serialization_error naming `what`.
void check_message_size(const out_message& out, const char* what);

} // namespace simul::detail

#include <mpi.h>

#include <memory>

namespace simul::detail {

/// One message taken off the communicator, into a buffer kept for the next:
/// a big buffer that is used again costs no page faults the second time.
struct received_message {
  struct aligned_delete {
    void operator()(char* p) const noexcept;
  };
  std::unique_ptr<char[], aligned_delete> buffer;
  std::size_t capacity = 0;
  std::size_t size = 0;
  int source = -1;
  [[nodiscard]] char* data() const noexcept { return buffer.get(); }
};

/// Takes the next message from `source` (or MPI_ANY_SOURCE) if one has
/// arrived: true and `out` filled, or false at once. Throws mpi_error.
bool try_receive(MPI_Comm comm, int source, received_message& out);

/// Takes the bytes of a result that `source` sent apart (k_apart_tag), which
/// follow its answer: waits for them, and throws mpi_error unless there are
/// exactly `bytes`.
void receive_apart(MPI_Comm comm, int source, std::size_t bytes, received_message& out);

/// Results at least this big leave a worker rank straight from the value's
/// memory, after their answer (out_message::apart_threshold).
inline constexpr std::size_t k_send_apart = std::size_t{1} << 20;

/// Sends a whole message and waits for it to leave (small answers and
/// control messages; a big one waits for the receiver, which always listens).
void send_blocking(MPI_Comm comm, int dest, const std::string& bytes, const char* what);
/// The same for `size` bytes at `data`, with message tag `tag`.
void send_blocking(MPI_Comm comm, int dest, const void* data, std::size_t size, int tag, const char* what);

/// Writes `header` into the room at the front of `out` and returns the bytes.
inline const std::string& finish(out_message& out, const mpi_header& header) {
  set_header(out, header);
  return out.bytes;
}

} // namespace simul::detail
