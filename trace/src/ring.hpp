#pragma once

// The per-thread rings of simul::trace and the events in them (private).
//
// A ring is written by its own thread only and read by `collect` from any
// thread: every word of a slot is a relaxed atomic and each slot carries a
// sequence number (a seqlock), so a reader copies a slot and keeps it only if
// the sequence shows it was neither being written nor overwritten meanwhile.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace simul::detail {

enum class trace_kind : std::uint8_t { run, wait, create, name, rename, end, remote, span_run, span_wait };

/// One event: 7 words (see recorder.cpp for each kind's layout).
struct trace_slot {
  std::atomic<std::uint64_t> seq{0}; ///< 2 * (index + 1) once slot `index` is written; odd while writing
  std::atomic<std::uint64_t> w[7] = {};
};

/// The decoded copy of a slot.
struct trace_event {
  std::uint64_t w[7];
  [[nodiscard]] trace_kind kind() const noexcept { return static_cast<trace_kind>(w[0] & 0xff); }
  [[nodiscard]] std::uint64_t high() const noexcept { return w[0] >> 8; }
};

struct trace_ring {
  trace_ring(std::size_t capacity, int pid, int tid, std::string name)
      : slots(new trace_slot[capacity]), capacity(capacity), pid(pid), tid(tid), thread_name(std::move(name)) {}

  std::unique_ptr<trace_slot[]> slots;
  const std::size_t capacity;
  std::atomic<std::uint64_t> head{0}; ///< events ever written
  std::atomic<std::uint64_t> base{0}; ///< events before this were cleared
  std::atomic<bool> alive{true};      ///< false once its thread has exited
  const int pid;
  const int tid;
  const std::string thread_name;
};

/// A lane of slices measured in another process (trace_remote_lane).
struct remote_lane_name {
  int pid;
  std::string name;
};

/// Every ring, in the order their threads first recorded.
struct trace_registry {
  std::mutex mutex;
  std::vector<std::unique_ptr<trace_ring>> rings;
  std::size_t capacity = 16384;
  /// Lanes of remote processes named by trace_remote_lane (number - 1 = index).
  std::vector<remote_lane_name> remote_lanes;
};
trace_registry& registry() noexcept;

/// The events of one ring that were complete, oldest first, and how many
/// were overwritten before them since the last clear.
struct ring_copy {
  const trace_ring* ring;
  std::vector<trace_event> events;
  std::uint64_t dropped = 0;
};
std::vector<ring_copy> copy_rings();
/// The names of the remote lanes registered so far.
std::vector<remote_lane_name> copy_remote_lanes();

/// Text packed into `words` words of an event (zero-padded, truncated).
void pack_text(std::atomic<std::uint64_t>* words, std::size_t count, std::string_view text) noexcept;
std::string unpack_text(const std::uint64_t* words, std::size_t count);

} // namespace simul::detail
