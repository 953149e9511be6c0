#pragma once

// simul::http's private state: the client's libcurl multi handle driven by
// the loop, and one transfer per request.
//
// client_state owns the CURLM and tells the loop what libcurl wants:
// CURLMOPT_SOCKETFUNCTION -> loop.add_reader / add_writer / remove_*,
// CURLMOPT_TIMERFUNCTION -> loop.call_later; the loop's callbacks call
// curl_multi_socket_action, then collect finished transfers. Transfers hold
// the state by shared_ptr, so it lives as long as any of them.
//
// A transfer owns its CURL easy handle and every byte libcurl points to (the
// copied request). A task waits on it with a transfer_waiter, which is woken
// when the transfer finishes (or, streaming, when the head or a chunk is in);
// cancelling the task removes the easy handle from the multi at once.

#include <simul/http/client.hpp>
#include <simul/loop/detail/task_base.hpp>
#include <simul/loop/event_loop.hpp>

#include <curl/curl.h>

#include <array>
#include <deque>
#include <memory>
#include <string>
#include <unordered_set>

namespace simul::http::detail {

struct transfer;

struct client_state {
  client_state(event_loop& loop, client_options options);
  ~client_state();
  client_state(const client_state&) = delete;
  client_state& operator=(const client_state&) = delete;

  /// Hands the transfer to libcurl. Throws request_error if libcurl refuses.
  void add(transfer& t);
  /// Takes the transfer out of libcurl (closing its connection if it was
  /// mid-way). Idempotent.
  void remove(transfer& t) noexcept;
  /// Throws simul::error unless called on the client's loop.
  void check_loop(const char* what) const;

  event_loop* loop;
  client_options options;
  CURLM* multi = nullptr;
  simul::handle timer;
  std::unordered_set<curl_socket_t> watched;

 private:
  static int on_socket(CURL* easy, curl_socket_t fd, int what, void* userp, void* socketp) noexcept;
  static int on_timer(CURLM* multi, long timeout_ms, void* userp) noexcept;
  void socket_action(curl_socket_t fd, int events) noexcept;
  void collect_done() noexcept;
};

class transfer_waiter;

/// A request's own copy of what it sends (libcurl points into it).
struct owned_request {
  explicit owned_request(const http::request& r);
  std::string method;
  std::string url;
  header_list headers;
  std::string body;
  std::chrono::milliseconds timeout;
};

struct transfer {
  /// How the body goes and comes.
  enum class mode { whole, stream_response, upload_generator };
  transfer(std::shared_ptr<client_state> client, const http::request& r, mode how);
  ~transfer();
  transfer(const transfer&) = delete;
  transfer& operator=(const transfer&) = delete;

  /// libcurl is done with it: the result and the response's details.
  void finish(CURLcode code) noexcept;
  /// Throws the error the result stands for (nothing for CURLE_OK).
  void throw_if_failed() const;

  std::shared_ptr<client_state> client;
  CURL* easy = nullptr;
  curl_slist* header_list = nullptr;
  owned_request req;
  response resp;
  std::array<char, CURL_ERROR_SIZE> errbuf{};
  bool added = false;
  bool finished = false;
  CURLcode result = CURLE_OK;
  transfer_waiter* waiting = nullptr;

  // The head as it arrives (the header callback), then for streaming the chunks.
  bool streaming;
  bool head_complete = false;
  bool paused = false;
  std::deque<std::string> chunks;
  std::size_t buffered = 0;

  // Uploads from a generator: what the read callback hands out next.
  std::string upload_data;
  std::size_t upload_pos = 0;
  bool upload_ended = false;
  bool upload_waiting = false; // the read callback paused for want of data

 private:
  /// The easy handle's options (the constructor's second half).
  void setup(mode how);
  static std::size_t on_header(char* data, std::size_t size, std::size_t count, void* userp) noexcept;
  static std::size_t on_write(char* data, std::size_t size, std::size_t count, void* userp) noexcept;
  static std::size_t on_read(char* data, std::size_t size, std::size_t count, void* userp) noexcept;
  void notify() noexcept;
};

/// What a task waits for on a transfer.
enum class wait_for_state { finished, head, chunk, upload_data };

/// Suspends a task until the transfer reaches `state` (or finishes); adds the
/// transfer to libcurl first if it is not there yet.
class transfer_waiter final : public simul::detail::waiter {
 public:
  transfer_waiter(transfer& t, wait_for_state state) noexcept : m_transfer(t), m_state(state) {}
  transfer_waiter(const transfer_waiter&) = delete;
  transfer_waiter& operator=(const transfer_waiter&) = delete;
  ~transfer_waiter() {
    if (m_transfer.waiting == this) {
      m_transfer.waiting = nullptr;
    }
  }

  [[nodiscard]] bool reached() const noexcept;
  bool await_ready() const noexcept { return reached(); }
  bool await_suspend(std::coroutine_handle<> h);
  void await_resume();
  bool on_cancel() noexcept override;
  /// From the transfer: something changed; wakes the task if `state` is reached.
  void poke() noexcept;

 private:
  transfer& m_transfer;
  wait_for_state m_state;
  std::exception_ptr m_error;
};

/// "GET http://host/path".
std::string describe(const owned_request& r);

} // namespace simul::http::detail
