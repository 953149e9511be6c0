// The client's libcurl multi handle on the loop: libcurl's sockets through
// add_reader / add_writer, its timer through call_later.

#include "http_internal.hpp"

#include <mutex>
#include <thread>

namespace simul::http::detail {

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw simul::error("simul::http: curl_global_init failed");
    }
  });
}

} // namespace

client_state::client_state(event_loop& l, client_options o) : loop(&l), options(std::move(o)) {
  if (options.max_redirects < 0) {
    throw simul::error("simul::http::client: max_redirects must not be negative");
  }
  if (options.timeout.count() < 0 || options.connect_timeout.count() < 0) {
    throw simul::error("simul::http::client: timeouts must not be negative");
  }
  if (options.stream_buffer == 0) {
    throw simul::error("simul::http::client: stream_buffer must not be zero");
  }
  global_init();
  multi = curl_multi_init();
  if (multi == nullptr) {
    throw simul::error("simul::http::client: curl_multi_init failed");
  }
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &client_state::on_socket);
  curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &client_state::on_timer);
  curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(options.max_connections));
  curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, static_cast<long>(options.max_connections_per_host));
  if (options.max_connections > 0) {
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(options.max_connections));
  }
}

client_state::~client_state() {
  // Every transfer is gone (they hold this state): only idle connections
  // remain; closing them makes libcurl remove their watches.
  curl_multi_cleanup(multi);
  for (const auto fd : watched) {
    loop->remove_reader(fd);
    loop->remove_writer(fd);
  }
  timer.cancel();
}

void client_state::check_loop(const char* what) const {
  if (&get_running_loop() != loop) {
    throw simul::error(std::string("simul::http::client::") + what +
                       ": the client belongs to another event loop (make one client per loop)");
  }
}

void client_state::add(transfer& t) {
  if (t.added) {
    return;
  }
  if (const CURLMcode rc = curl_multi_add_handle(multi, t.easy); rc != CURLM_OK) {
    throw request_error(describe(t.req) + ": " + curl_multi_strerror(rc), t.req.url, curl_multi_strerror(rc), 0);
  }
  t.added = true;
}

void client_state::remove(transfer& t) noexcept {
  if (t.added) {
    t.added = false;
    curl_multi_remove_handle(multi, t.easy);
  }
}

int client_state::on_socket(CURL*, curl_socket_t fd, int what, void* userp, void*) noexcept {
  auto* self = static_cast<client_state*>(userp);
  auto& loop = *self->loop;
  try {
    if (what == CURL_POLL_REMOVE) {
      loop.remove_reader(fd);
      loop.remove_writer(fd);
      self->watched.erase(fd);
      return 0;
    }
    if ((what & CURL_POLL_IN) != 0) {
      loop.add_reader(fd, [self, fd] { self->socket_action(fd, CURL_CSELECT_IN); });
    } else {
      loop.remove_reader(fd);
    }
    if ((what & CURL_POLL_OUT) != 0) {
      loop.add_writer(fd, [self, fd] { self->socket_action(fd, CURL_CSELECT_OUT); });
    } else {
      loop.remove_writer(fd);
    }
    self->watched.insert(fd);
    return 0;
  } catch (...) {
    return -1; // libcurl fails the transfers on this socket
  }
}

int client_state::on_timer(CURLM*, long timeout_ms, void* userp) noexcept {
  auto* self = static_cast<client_state*>(userp);
  self->timer.cancel();
  self->timer = {};
  if (timeout_ms < 0) {
    return 0;
  }
  try {
    // libcurl asks not to be called back from inside this callback: even a
    // zero timeout runs on the next iteration.
    self->timer = self->loop->call_later(std::chrono::milliseconds(timeout_ms), [self] {
      self->timer = {};
      self->socket_action(CURL_SOCKET_TIMEOUT, 0);
    });
    return 0;
  } catch (...) {
    return -1;
  }
}

void client_state::socket_action(curl_socket_t fd, int events) noexcept {
  int running = 0;
  curl_multi_socket_action(multi, fd, events, &running);
  collect_done();
}

void client_state::collect_done() noexcept {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
    if (msg->msg != CURLMSG_DONE) {
      continue;
    }
    transfer* t = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
    const CURLcode code = msg->data.result;
    t->finish(code); // reads the details before the handle leaves the multi
    remove(*t);
  }
}

} // namespace simul::http::detail
