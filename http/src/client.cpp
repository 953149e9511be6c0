// simul::http::client: the public calls. Each copies its request into a
// transfer before it returns (so a braced temporary in the caller's
// `co_await` expression is never touched again), then a coroutine that owns
// the transfer waits on it.

#include "http_internal.hpp"

#include <simul/loop/detail/loop_local.hpp>
#include <simul/loop/task_handle.hpp>

namespace simul::http {

namespace {

using detail::transfer;
using detail::transfer_waiter;
using detail::wait_for_state;

task<response> run_transfer(std::unique_ptr<transfer> t) {
  co_await transfer_waiter(*t, wait_for_state::finished);
  t->throw_if_failed();
  co_return std::move(t->resp);
}

async_generator<std::string> stream_body(std::shared_ptr<transfer> t) {
  const std::size_t resume_below = t->client->options.stream_buffer / 2;
  for (;;) {
    if (!t->chunks.empty()) {
      std::string chunk = std::move(t->chunks.front());
      t->chunks.pop_front();
      t->buffered -= chunk.size();
      if (t->paused && t->buffered <= resume_below && !t->finished) {
        t->paused = false;
        // May hand over the held bytes at once (on_write, which may pause again).
        curl_easy_pause(t->easy, CURLPAUSE_CONT);
      }
      co_yield std::move(chunk);
      continue;
    }
    if (t->finished) {
      t->throw_if_failed();
      co_return;
    }
    co_await transfer_waiter(*t, wait_for_state::chunk);
  }
}

/// Feeds the transfer from `body` whenever libcurl paused for want of data.
task<response> run_upload(std::unique_ptr<transfer> t, async_generator<std::string> body) {
  for (;;) {
    co_await transfer_waiter(*t, wait_for_state::upload_data);
    if (t->finished) {
      break;
    }
    t->upload_waiting = false;
    t->upload_data.clear();
    t->upload_pos = 0;
    // Empty chunks would read as the end: skip them.
    while (t->upload_data.empty() && !t->upload_ended) {
      if (auto chunk = co_await body.next()) {
        t->upload_data = std::move(*chunk);
      } else {
        t->upload_ended = true;
      }
    }
    if (!t->finished) {
      curl_easy_pause(t->easy, CURLPAUSE_CONT); // may call on_read at once
    }
  }
  t->throw_if_failed();
  co_return std::move(t->resp);
}

task<stream_response> run_stream(std::shared_ptr<transfer> t) {
  co_await transfer_waiter(*t, wait_for_state::head);
  if (t->finished) {
    t->throw_if_failed();
  }
  stream_response out;
  out.head = t->resp; // the head: status, reason, headers
  out.head.body.clear();
  out.body = stream_body(t);
  co_return out;
}

} // namespace

client::client(client_options options)
    : m_state(std::make_shared<detail::client_state>(get_running_loop(), std::move(options))) {}

client::client(event_loop& loop, client_options options)
    : m_state(std::make_shared<detail::client_state>(loop, std::move(options))) {}

client::~client() = default;
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;

const client_options& client::options() const noexcept { return m_state->options; }

task<response> client::get(std::string_view url) { return request(http::request{.url = url}); }

task<response> client::post(std::string_view url, std::string_view body, std::string_view content_type) {
  return request(
      http::request{.method = "POST", .url = url, .headers = {{"Content-Type", content_type}}, .body = body});
}

task<response> client::request(const http::request& r) {
  if (!m_state) {
    throw simul::error("simul::http::client::request: the client was moved from");
  }
  m_state->check_loop("request");
  return run_transfer(std::make_unique<transfer>(m_state, r, transfer::mode::whole));
}

task<stream_response> client::stream(const http::request& r) {
  if (!m_state) {
    throw simul::error("simul::http::client::stream: the client was moved from");
  }
  m_state->check_loop("stream");
  return run_stream(std::make_shared<transfer>(m_state, r, transfer::mode::stream_response));
}

task<response> client::upload(const http::request& r, async_generator<std::string> body) {
  if (!m_state) {
    throw simul::error("simul::http::client::upload: the client was moved from");
  }
  m_state->check_loop("upload");
  return run_upload(std::make_unique<transfer>(m_state, r, transfer::mode::upload_generator), std::move(body));
}

client& default_client() {
  auto& loop = simul::detail::running_loop_checked("simul::http::default_client");
  return simul::detail::loop_local<client>(loop, [&loop] { return client(loop, client_options{}); });
}

task<response> get(std::string_view url) { return default_client().get(url); }

task<response> post(std::string_view url, std::string_view body, std::string_view content_type) {
  return default_client().post(url, body, content_type);
}

} // namespace simul::http
