#pragma once

// Files as coroutines over libuv's file-system requests.
//
// Regular files cannot be polled, so libuv runs each request (open, read,
// write, stat, close...) on its thread pool and the awaiting task resumes on
// the loop when it is done: the loop keeps serving meanwhile. This is the
// "reading and writing files" case: many files read concurrently from one
// thread.
//
//   auto f = co_await simul::open_file("data.txt", "r");
//   std::string head = co_await f.read(100);
//   co_await f.close();
//   std::string all = co_await simul::read_file("data.txt");
//
// Modes are Python's: "r", "r+", "w", "w+", "a", "a+", "x", "x+" ("b" is
// accepted and ignored: data is always bytes in a std::string). A file keeps
// a position like Python's file object; `read_at` / `write_at` take an
// explicit offset and leave it alone. Errors throw `io_error` naming the
// path and the system's text ("open missing.txt: no such file or directory
// (ENOENT)"). Cancelling the awaiting task abandons the request at once (it
// may still complete on the thread pool; its result is dropped).
//
// Thread-safety: loop thread only, inside a task. Lifetime: a `file` is
// move-only; destroying one that is still open closes its descriptor
// synchronously. It must not outlive the loop.

#include <simul/loop/io/io_error.hpp>
#include <simul/loop/task.hpp>

#include <cstdint>
#include <string>
#include <utility>

namespace simul {

/// What `stat_file` and `file::stat` report.
struct file_stat {
  std::uint64_t size = 0;    ///< bytes
  std::uint32_t mode = 0;    ///< st_mode: type and permission bits
  std::int64_t mtime_ns = 0; ///< last modification, nanoseconds since the epoch
  [[nodiscard]] bool is_regular() const noexcept { return (mode & 0170000) == 0100000; }
  [[nodiscard]] bool is_directory() const noexcept { return (mode & 0170000) == 0040000; }
};

/// An open file. See the file comment.
///
/// Thread-safety: loop thread only. Lifetime: move-only; owns its descriptor.
class file {
 public:
  file() noexcept = default;
  file(int fd, std::string path, bool append) noexcept : m_fd(fd), m_path(std::move(path)), m_append(append) {}
  file(file&& o) noexcept
      : m_fd(std::exchange(o.m_fd, -1)), m_path(std::move(o.m_path)), m_position(o.m_position), m_append(o.m_append) {}
  file& operator=(file&& o) noexcept;
  file(const file&) = delete;
  file& operator=(const file&) = delete;
  ~file();

  /// Up to `n` bytes from the current position ("" at the end of the file).
  [[nodiscard]] task<std::string> read(std::size_t n);
  /// Everything from the current position to the end.
  [[nodiscard]] task<std::string> read_all();
  /// Writes all of `data` at the current position (at the end in append mode).
  [[nodiscard]] task<void> write(std::string data);
  /// Up to `n` bytes at `offset`; the position does not move.
  [[nodiscard]] task<std::string> read_at(std::uint64_t offset, std::size_t n);
  /// Writes all of `data` at `offset`; the position does not move.
  [[nodiscard]] task<void> write_at(std::uint64_t offset, std::string data);
  /// Flushes the file's data to the disk (fsync).
  [[nodiscard]] task<void> sync();
  /// The file's status.
  [[nodiscard]] task<file_stat> stat();
  /// Closes the file. Idempotent.
  [[nodiscard]] task<void> close();

  /// Moves the position (like seek(offset, SEEK_SET)).
  void seek(std::uint64_t offset) noexcept { m_position = offset; }
  [[nodiscard]] std::uint64_t tell() const noexcept { return m_position; }
  [[nodiscard]] bool is_open() const noexcept { return m_fd >= 0; }
  [[nodiscard]] int fileno() const noexcept { return m_fd; }
  [[nodiscard]] const std::string& path() const noexcept { return m_path; }

 private:
  int checked_fd(const char* what) const;
  int m_fd = -1;
  std::string m_path;
  std::uint64_t m_position = 0;
  bool m_append = false;
};

/// Opens `path` with a Python mode ("r", "w", "a", "x", with "+"); new files
/// get `permissions` (minus the umask). Throws `io_error`, or `simul::error`
/// for a bad mode.
[[nodiscard]] task<file> open_file(std::string path, std::string mode = "r", int permissions = 0644);
/// The whole content of `path`.
[[nodiscard]] task<std::string> read_file(std::string path);
/// Replaces the content of `path` with `data` (creating it).
[[nodiscard]] task<void> write_file(std::string path, std::string data);
/// The status of `path` (following symbolic links).
[[nodiscard]] task<file_stat> stat_file(std::string path);
/// Removes the file `path`.
[[nodiscard]] task<void> remove_file(std::string path);

} // namespace simul
