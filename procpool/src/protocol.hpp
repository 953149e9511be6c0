#pragma once

// The two wire protocols of the pool (private to the module).
//
// Parent <-> worker, over a SOCK_STREAM socketpair, one frame at a time:
//   frame_header, then `size` payload bytes; `nfds` descriptors ride with the
//   header (SCM_RIGHTS). A header whose magic, kind or size is wrong is a
//   corrupt frame: the parent treats it as that worker's crash.
// Parent <-> zygote, over a SOCK_SEQPACKET socketpair: fixed-size control_msg
//   records, a spawn request carrying the worker's end of a fresh socketpair.

#include <simul/procpool/detail/codec/message.hpp>
#include <simul/procpool/detail/task.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace simul::detail {

inline constexpr std::uint32_t k_frame_magic = 0x4c4d4953;           // "SIML"
inline constexpr std::uint64_t k_max_frame = std::uint64_t{1} << 30; // bigger payloads go through memfds
inline constexpr std::size_t k_max_fds = 64;

enum class frame_kind : std::uint16_t {
  task = 1,        // parent -> worker: run trampoline `fn` on the payload
  retire = 2,      // parent -> worker: exit cleanly
  result = 10,     // worker -> parent: the task's encoded result
  error = 11,      // worker -> parent: type name blob + message blob
  init_error = 12, // worker -> parent: the initializer threw (type + message)
};

struct frame_header {
  std::uint32_t magic = k_frame_magic;
  std::uint16_t kind = 0;
  std::uint16_t nfds = 0;
  std::uint64_t id = 0;
  std::uint64_t fn = 0; ///< task frames: the trampoline; answers: the worker's pid
  std::uint64_t size = 0;
  std::int64_t run_begin = 0; ///< answers: when the worker ran the task (steady-clock ns; for simul::trace)
  std::int64_t run_end = 0;
};
static_assert(sizeof(frame_header) == 48);

/// Writes a whole frame (blocking, retrying on EINTR; MSG_NOSIGNAL). False if
/// the peer is gone.
bool send_frame(int fd, frame_kind kind, std::uint64_t id, std::uint64_t fn, const std::string& payload,
                const std::vector<unique_fd>& fds, std::int64_t run_begin = 0, std::int64_t run_end = 0);

/// One frame of a batch: the header fields, the payload and its descriptors
/// (borrowed: they must outlive the `send_frames` call).
struct frame_out {
  frame_kind kind = frame_kind::task;
  std::uint64_t id = 0;
  std::uint64_t fn = 0;
  const std::string* payload = nullptr;
  const std::vector<unique_fd>* fds = nullptr;
  std::int64_t run_begin = 0;
  std::int64_t run_end = 0;
};

/// Writes several frames with as few `sendmsg` calls as it can (one per 512
/// frames or per `k_max_fds` descriptors). Descriptors ride with the first
/// byte of the call that carries their frame, never after it, so a reader that
/// queues what it receives always has a frame's descriptors when it reaches
/// its header. Returns how many frames were written whole: `count`, or fewer
/// if the peer is gone (or a frame has more than `k_max_fds` descriptors).
std::size_t send_frames(int fd, const frame_out* frames, std::size_t count);

/// Reads up to `capacity` bytes without blocking (or blocking if `block`),
/// appending any received descriptors to `fds`. Returns bytes read, 0 on EOF,
/// -1 if nothing is available (non-blocking) and -2 on error.
long receive_some(int fd, char* out, std::size_t capacity, std::vector<unique_fd>& fds, bool block);

enum class control_kind : std::uint32_t {
  spawn = 1,        // parent -> zygote: fork worker `worker` on the attached socket
  kill = 2,         // parent -> zygote: send `value` (a signal) to worker `worker` if alive
  spawned = 3,      // zygote -> parent: worker `worker` is pid `pid`
  exited = 4,       // zygote -> parent: worker `worker` (pid `pid`) ended with wait status `value`
  spawn_failed = 5, // zygote -> parent: fork failed with errno `value`
};

struct control_msg {
  control_kind kind{};
  std::int32_t pid = 0;
  std::int32_t value = 0;
  std::uint32_t pad = 0;
  std::uint64_t worker = 0;
};

/// Sends one control record (with an optional descriptor). False if the peer is gone.
bool send_control(int fd, const control_msg& msg, int attached_fd = -1);

/// Receives one control record (and its descriptor, if any). 1: got one,
/// 0: EOF, -1: nothing available (non-blocking), -2: error.
int receive_control(int fd, control_msg& msg, unique_fd& attached, bool block);

struct zygote_config {
  void (*initializer)() = nullptr;
  std::size_t shm_threshold = std::size_t{1} << 20;
  bool keep_worker_heap = false;
  long worker_spin_ns = 0;                    ///< look at the socket this long before sleeping on it
  code_naming naming = code_naming::anchored; ///< how task frames name their trampolines
};

// An exec'd zygote's handshake, the first record each way on the control
// socket: the parent sends its build and the config (the initializer as a
// code offset), the zygote answers whether it runs the same build.
inline constexpr std::uint32_t k_setup_magic = 0x5a59474f; // "ZYGO"
inline constexpr std::size_t k_build_text = 256;
inline constexpr std::uint64_t k_no_initializer = ~std::uint64_t{0};

struct zygote_setup {
  std::uint32_t magic = k_setup_magic;
  std::uint32_t keep_worker_heap = 0;
  std::uint64_t initializer = k_no_initializer; ///< code offset
  std::uint64_t shm_threshold = 0;
  std::int64_t worker_spin_ns = 0;
  char comm[16] = {};            ///< the program's name, for the zygote's own (ps, top)
  char build[k_build_text] = {}; ///< the parent's executable_build_id()
};

struct zygote_ready {
  std::uint32_t magic = k_setup_magic;
  std::uint32_t same_build = 0;  ///< 1: serving; 0: another build, the zygote exits
  char build[k_build_text] = {}; ///< the zygote's executable_build_id()
};

/// The zygote's main loop; never returns.
[[noreturn]] void zygote_main(int control_fd, const zygote_config& config);

/// A worker's main loop on its socket; never returns.
[[noreturn]] void worker_main(int channel_fd, const zygote_config& config);

/// Descriptors every zygote must close after fork: other pools' sockets, which
/// would otherwise keep those pools' peers from seeing EOF.
void register_pool_fd(int fd);
void unregister_pool_fd(int fd);
std::vector<int> pool_fds_snapshot();

/// Around the zygote's fork, as for the payload cache: the registry of
/// shared_buffer blocks is locked across the fork and forgotten in the child.
void shared_blocks_before_fork() noexcept;
void shared_blocks_parent_after_fork() noexcept;
void shared_blocks_child_after_fork() noexcept;

} // namespace simul::detail
