// One request on libcurl: the easy handle's setup from a copied request, the
// header and body callbacks, the result as a response or a typed error.

#include "http_internal.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace simul::http {

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool is_token(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
  });
}

bool has_line_break(std::string_view s) noexcept {
  return s.find_first_of("\r\n") != std::string_view::npos || s.find('\0') != std::string_view::npos;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  return s;
}

} // namespace

std::optional<std::string> response::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) {
      return value;
    }
  }
  return std::nullopt;
}

std::vector<std::string> response::header_values(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) {
      out.push_back(value);
    }
  }
  return out;
}

void response::raise_for_status() const {
  if (status >= 400 && status < 600) {
    const char* kind = status < 500 ? "client error" : "server error";
    std::string message = std::to_string(status) + " " + kind;
    if (!reason.empty()) {
      message += " (" + reason + ")";
    }
    throw status_error(message + " for " + (method.empty() ? "" : method + " ") + url, url, status);
  }
}

namespace detail {

std::string describe(const owned_request& r) { return r.method + " " + r.url; }

owned_request::owned_request(const http::request& r) : method(r.method), url(r.url), body(r.body), timeout(r.timeout) {
  r.headers.for_each([this](std::string_view name, std::string_view value) {
    headers.emplace_back(std::string(name), std::string(value));
  });
}

transfer::transfer(std::shared_ptr<client_state> c, const http::request& r, mode how)
    : client(std::move(c)), req(r), streaming(how == mode::stream_response) {
  // Bad input is refused before anything is sent.
  if (!is_token(req.method)) {
    throw request_error(describe(req) + ": invalid method \"" + req.method + "\"", req.url, "invalid method", 0);
  }
  if (req.url.empty() || has_line_break(req.url)) {
    throw url_error(describe(req) + ": invalid URL", req.url, "invalid URL", CURLE_URL_MALFORMAT);
  }
  if (req.timeout.count() < 0) {
    throw request_error(describe(req) + ": negative timeout", req.url, "negative timeout", 0);
  }
  for (const auto& [name, value] : req.headers) {
    if (!is_token(name) || has_line_break(value)) {
      throw request_error(describe(req) + ": invalid header \"" + name + "\"", req.url, "invalid header", 0);
    }
  }
  if (how == mode::upload_generator) {
    if (!req.body.empty()) {
      throw request_error(describe(req) + ": upload takes its body from the generator, not request::body", req.url,
                          "body given twice", 0);
    }
    if (r.method == http::request{}.method) {
      req.method = "PUT"; // the default method of an upload
    }
  }
  resp.method = req.method;
  resp.url = req.url;
  easy = curl_easy_init();
  if (easy == nullptr) {
    throw simul::error("simul::http: curl_easy_init failed");
  }
  try {
    setup(how);
  } catch (...) { // out of memory: the destructor will not run
    curl_easy_cleanup(easy);
    curl_slist_free_all(header_list);
    throw;
  }
}

void transfer::setup(mode how) {
  const auto& o = client->options;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, this);
  curl_easy_setopt(easy, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf.data());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, ""); // every encoding libcurl decodes
  curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L); // prefer multiplexing on a connection being made
  curl_easy_setopt(easy, CURLOPT_USERAGENT, o.user_agent.c_str());
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, o.follow_redirects ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, static_cast<long>(o.max_redirects));
  const auto whole = req.timeout.count() > 0 ? req.timeout : o.timeout;
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(whole.count()));
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()));
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, o.verify_tls ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, o.verify_tls ? 2L : 0L);
  if (!o.ca_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_CAINFO, o.ca_file.c_str());
  }
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &transfer::on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, this);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &transfer::on_write);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, this);
  if (how == mode::upload_generator) {
    curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L); // no length: chunked over HTTP/1.1
    curl_easy_setopt(easy, CURLOPT_READFUNCTION, &transfer::on_read);
    curl_easy_setopt(easy, CURLOPT_READDATA, this);
    if (req.method != "PUT") {
      curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
  } else if (req.method == "HEAD") {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else if (req.method != "GET" || !req.body.empty()) {
    if (req.method != "POST") {
      curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
    if (!req.body.empty() || req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req.body.data());
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    }
  }
  bool has_content_type = false;
  for (const auto& [name, value] : req.headers) {
    has_content_type = has_content_type || iequals(name, "Content-Type");
    // "Name;" sends a header with an empty value ("Name:" would remove it).
    const std::string line = value.empty() ? name + ";" : name + ": " + value;
    header_list = curl_slist_append(header_list, line.c_str());
  }
  if (!has_content_type && (!req.body.empty() || how == mode::upload_generator)) {
    header_list = curl_slist_append(header_list, "Content-Type: application/octet-stream");
  }
  header_list = curl_slist_append(header_list, "Expect:"); // no 100-continue round trip
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, header_list);
}

transfer::~transfer() {
  if (client) {
    client->remove(*this);
  }
  curl_easy_cleanup(easy);
  curl_slist_free_all(header_list);
}

void transfer::notify() noexcept {
  if (waiting != nullptr) {
    waiting->poke();
  }
}

std::size_t transfer::on_header(char* data, std::size_t size, std::size_t count, void* userp) noexcept {
  auto* t = static_cast<transfer*>(userp);
  const std::size_t n = size * count;
  const std::string_view line(data, n);
  try {
    if (line.rfind("HTTP/", 0) == 0) {
      // A new answer (after a 1xx or a redirect): start its head over.
      t->resp.headers.clear();
      t->resp.reason.clear();
      const auto sp = line.find(' ');
      const auto rest = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
      t->resp.status = std::atoi(std::string(rest.substr(0, 3)).c_str());
      if (rest.size() > 4) {
        t->resp.reason = std::string(trim(rest.substr(4)));
      }
    } else if (trim(line).empty()) {
      // The end of a head: the last one unless libcurl goes on (1xx, a redirect it follows).
      const bool interim = t->resp.status < 200;
      const bool followed = t->client->options.follow_redirects && t->resp.status >= 300 && t->resp.status < 400 &&
                            t->resp.header("Location").has_value();
      if (!interim && !followed) {
        t->head_complete = true;
        t->notify();
      }
    } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
      t->resp.headers.emplace_back(std::string(trim(line.substr(0, colon))), std::string(trim(line.substr(colon + 1))));
    }
  } catch (...) {
    return 0; // out of memory: libcurl fails the transfer
  }
  return n;
}

std::size_t transfer::on_write(char* data, std::size_t size, std::size_t count, void* userp) noexcept {
  auto* t = static_cast<transfer*>(userp);
  const std::size_t n = size * count;
  try {
    if (!t->streaming) {
      t->resp.body.append(data, n);
      return n;
    }
    if (t->buffered >= t->client->options.stream_buffer) {
      t->paused = true; // libcurl keeps these bytes and offers them again on unpause
      return CURL_WRITEFUNC_PAUSE;
    }
    t->chunks.emplace_back(data, n);
    t->buffered += n;
    t->notify();
    return n;
  } catch (...) {
    return 0;
  }
}

std::size_t transfer::on_read(char* data, std::size_t size, std::size_t count, void* userp) noexcept {
  auto* t = static_cast<transfer*>(userp);
  const std::size_t room = size * count;
  if (t->upload_pos < t->upload_data.size()) {
    const std::size_t n = std::min(room, t->upload_data.size() - t->upload_pos);
    std::memcpy(data, t->upload_data.data() + t->upload_pos, n);
    t->upload_pos += n;
    return n;
  }
  if (t->upload_ended) {
    return 0; // the end of the body
  }
  t->upload_waiting = true; // the uploading task fetches the next chunk, then unpauses
  t->notify();
  return CURL_READFUNC_PAUSE;
}

void transfer::finish(CURLcode code) noexcept {
  finished = true;
  result = code;
  head_complete = true;
  long status = 0;
  if (curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status != 0) {
    resp.status = static_cast<int>(status);
  }
  char* url = nullptr;
  if (curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url != nullptr) {
    try {
      resp.url = url;
    } catch (...) {
    }
  }
  long version = 0;
  curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version);
  // Built whole and moved in: assigning the literals straight to the member
  // trips g++ 12's false -Wrestrict warning at -O2.
  std::string_view name;
  switch (version) {
  case CURL_HTTP_VERSION_1_0:
    name = "1.0";
    break;
  case CURL_HTTP_VERSION_1_1:
    name = "1.1";
    break;
  case CURL_HTTP_VERSION_2_0:
    name = "2";
    break;
  case CURL_HTTP_VERSION_3:
    name = "3";
    break;
  default:
    break;
  }
  try {
    resp.http_version = std::string(name);
  } catch (...) {
  }
  curl_off_t total = 0;
  if (curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total) == CURLE_OK) {
    resp.elapsed = std::chrono::microseconds(total);
  }
  notify();
}

void transfer::throw_if_failed() const {
  if (result == CURLE_OK) {
    return;
  }
  const std::string reason = errbuf[0] != '\0' ? std::string(errbuf.data()) : curl_easy_strerror(result);
  const std::string what = describe(req) + ": ";
  const int code = static_cast<int>(result);
  switch (result) {
  case CURLE_OPERATION_TIMEDOUT:
    throw http::timeout_error(what + "timed out: " + reason, req.url);
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_URL_MALFORMAT:
    throw url_error(what + "bad URL: " + reason, req.url, reason, code);
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    throw resolve_error(what + "name lookup failed: " + reason, req.url, reason, code);
  case CURLE_COULDNT_CONNECT:
    throw connect_error(what + "connection failed: " + reason, req.url, reason, code);
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
    throw tls_error(what + "TLS failed: " + reason, req.url, reason, code);
  case CURLE_TOO_MANY_REDIRECTS:
    throw redirect_error(what + "too many redirects: " + reason, req.url, reason, code);
  case CURLE_PARTIAL_FILE:
  case CURLE_RECV_ERROR:
  case CURLE_HTTP2_STREAM:
    if (resp.status != 0) {
      throw incomplete_body_error(what + "body cut short: " + reason, req.url, reason, code);
    }
    [[fallthrough]];
  default:
    throw request_error(what + reason, req.url, reason, code);
  }
}

// ---- waiting ----

bool transfer_waiter::reached() const noexcept {
  const auto& t = m_transfer;
  switch (m_state) {
  case wait_for_state::finished:
    return t.finished;
  case wait_for_state::head:
    return t.finished || t.head_complete;
  case wait_for_state::chunk:
    return t.finished || !t.chunks.empty();
  case wait_for_state::upload_data:
    return t.finished || t.upload_waiting;
  }
  return true;
}

bool transfer_waiter::await_suspend(std::coroutine_handle<> h) {
  if (!suspend_on(h)) {
    return false;
  }
  m_transfer.waiting = this;
  try {
    m_transfer.client->add(m_transfer);
  } catch (...) {
    m_error = std::current_exception();
    m_transfer.waiting = nullptr;
    wake();
  }
  return true;
}

void transfer_waiter::await_resume() {
  if (m_task != nullptr) {
    check_cancel();
  }
  if (m_error) {
    std::rethrow_exception(m_error);
  }
}

void transfer_waiter::poke() noexcept {
  if (reached()) {
    m_transfer.waiting = nullptr;
    wake();
  }
}

bool transfer_waiter::on_cancel() noexcept {
  if (m_transfer.waiting != this) {
    return false; // woken already
  }
  m_transfer.waiting = nullptr;
  m_transfer.client->remove(m_transfer); // aborts the transfer now, closing its connection
  abort_and_wake();
  return true;
}

} // namespace detail
} // namespace simul::http
