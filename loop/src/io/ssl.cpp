// TLS (<simul/loop/io/ssl.hpp>): ssl_context (an SSL_CTX with Python's
// defaults) and tls_session (tls.hpp: one connection's SSL object over
// memory BIOs).

#include "io/tls.hpp"

#include "io/io_internal.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <unistd.h>

#include <array>
#include <cerrno>

namespace simul {

struct ssl_context::impl {
  SSL_CTX* ctx = nullptr;
  bool server = false;
  bool check_hostname = false;
  ssl_verify verify = ssl_verify::none;
  std::string alpn; ///< the protocols in ALPN's wire form: each preceded by its length
  std::function<std::optional<ssl_context>(std::string_view)> sni; ///< a server's server-name callback

  impl() = default;
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;
  ~impl() { SSL_CTX_free(ctx); }

  void apply_verify() const noexcept {
    int mode = SSL_VERIFY_NONE;
    if (verify != ssl_verify::none) {
      mode = SSL_VERIFY_PEER;
      if (server && verify == ssl_verify::required) {
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
      }
    }
    SSL_CTX_set_verify(ctx, mode, nullptr);
  }
};

namespace {

/// OpenSSL's text for the newest error in this thread's queue.
std::string openssl_reason() {
  const unsigned long e = ERR_peek_last_error();
  if (e == 0) {
    return "no reason given by OpenSSL";
  }
  if (const char* reason = ERR_reason_error_string(e); reason != nullptr) {
    return reason;
  }
  std::array<char, 256> text{};
  ERR_error_string_n(e, text.data(), text.size());
  return text.data();
}

/// Throws ssl_error "<what>: <OpenSSL's reason>" about `address`, and
/// empties the thread's error queue.
[[noreturn]] void throw_openssl(const std::string& what, const std::string& address) {
  auto reason = openssl_reason();
  ERR_clear_error();
  throw ssl_error(what + (address.empty() ? "" : " " + address) + ": " + reason, address, reason);
}

/// Throws io_error (ENOENT, EACCES...) unless `path` can be read.
void check_readable(const char* who, const std::string& path) {
  if (::access(path.c_str(), R_OK) != 0) {
    detail::throw_io_error(-errno, std::string(who) + ": read", path);
  }
}

std::shared_ptr<ssl_context::impl> make_context(bool server) {
  auto i = std::make_shared<ssl_context::impl>();
  i->server = server;
  ERR_clear_error();
  i->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (i->ctx == nullptr || SSL_CTX_set_min_proto_version(i->ctx, TLS1_2_VERSION) != 1) {
    throw_openssl("ssl_context: cannot make an OpenSSL context", "");
  }
  SSL_CTX_set_options(i->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  return i;
}

} // namespace

ssl_context ssl_context::client() {
  auto i = make_context(false);
  i->verify = ssl_verify::required;
  i->check_hostname = true;
  i->apply_verify();
  ssl_context out(std::move(i));
  out.set_default_verify_paths();
  return out;
}

ssl_context ssl_context::server() {
  auto i = make_context(true);
  i->apply_verify();
  return ssl_context(std::move(i));
}

bool ssl_context::is_server() const noexcept { return m_impl->server; }

void ssl_context::load_cert_chain(const std::string& certfile, const std::string& keyfile) {
  constexpr const char* who = "load_cert_chain";
  const auto& key = keyfile.empty() ? certfile : keyfile;
  check_readable(who, certfile);
  check_readable(who, key);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(m_impl->ctx, certfile.c_str()) != 1) {
    throw_openssl("load_cert_chain: no certificate in", certfile);
  }
  if (SSL_CTX_use_PrivateKey_file(m_impl->ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    throw_openssl("load_cert_chain: cannot use the private key in", key); // "key values mismatch"
  }
  if (SSL_CTX_check_private_key(m_impl->ctx) != 1) {
    throw_openssl("load_cert_chain: the key does not match the certificate in", certfile);
  }
}

void ssl_context::load_verify_locations(const std::string& cafile) {
  check_readable("load_verify_locations", cafile);
  ERR_clear_error();
  if (SSL_CTX_load_verify_locations(m_impl->ctx, cafile.c_str(), nullptr) != 1) {
    throw_openssl("load_verify_locations: no certificate in", cafile);
  }
}

void ssl_context::load_verify_data(std::string_view pem) {
  ERR_clear_error();
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) {
    throw_openssl("load_verify_data: out of memory", "");
  }
  auto* store = SSL_CTX_get_cert_store(m_impl->ctx);
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    const int ok = X509_STORE_add_cert(store, cert);
    X509_free(cert);
    if (ok != 1) {
      BIO_free(bio);
      throw_openssl("load_verify_data: cannot trust a certificate", "");
    }
    ++added;
  }
  BIO_free(bio);
  ERR_clear_error(); // the end of the data reads as an error
  if (added == 0) {
    throw ssl_error("load_verify_data: no PEM certificate in the data", "", "no certificate");
  }
}

void ssl_context::set_default_verify_paths() {
  ERR_clear_error();
  if (SSL_CTX_set_default_verify_paths(m_impl->ctx) != 1) {
    throw_openssl("set_default_verify_paths: cannot load the system's trusted authorities", "");
  }
}

namespace {

/// A server's ALPN choice: the first of its protocols the client offers.
int select_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen, const unsigned char* offered,
                unsigned int offered_len, void* arg) {
  const auto& ours = static_cast<const ssl_context::impl*>(arg)->alpn;
  unsigned char* chosen = nullptr;
  if (ours.empty() ||
      SSL_select_next_proto(&chosen, outlen, reinterpret_cast<const unsigned char*>(ours.data()),
                            static_cast<unsigned int>(ours.size()), offered, offered_len) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK; // nothing in common: no protocol, the handshake goes on
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

/// OpenSSL's server-name callback: the session whose hello this is decides.
int on_server_name(SSL* ssl, int* alert, void* /*arg*/) {
  auto* session = static_cast<detail::tls_session*>(SSL_get_app_data(ssl));
  return session != nullptr ? session->on_server_name(alert) : SSL_TLSEXT_ERR_OK;
}

} // namespace

void ssl_context::set_sni_callback(std::function<std::optional<ssl_context>(std::string_view)> callback) {
  if (!m_impl->server) {
    throw error("set_sni_callback: the server-name callback is for server contexts (ssl_context::server())");
  }
  m_impl->sni = std::move(callback);
  if (m_impl->sni) {
    SSL_CTX_set_tlsext_servername_callback(m_impl->ctx, &on_server_name);
  } else {
    SSL_CTX_set_tlsext_servername_callback(m_impl->ctx, nullptr);
  }
}

void ssl_context::set_alpn_protocols(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255) {
      throw error("set_alpn_protocols: a protocol name must be 1 to 255 bytes (got " + std::to_string(p.size()) + ")");
    }
    wire += static_cast<char>(p.size());
    wire += p;
  }
  m_impl->alpn = std::move(wire);
  if (m_impl->server) {
    SSL_CTX_set_alpn_select_cb(m_impl->ctx, &select_alpn, m_impl.get());
  } else if (SSL_CTX_set_alpn_protos(m_impl->ctx, reinterpret_cast<const unsigned char*>(m_impl->alpn.data()),
                                     static_cast<unsigned int>(m_impl->alpn.size())) != 0) {
    throw_openssl("set_alpn_protocols: OpenSSL refused the list", ""); // 0 means success here
  }
}

void ssl_context::set_verify_mode(ssl_verify mode) {
  if (mode == ssl_verify::none && m_impl->check_hostname) {
    throw error("ssl_context: cannot set verify mode none while check_hostname is on (turn it off first)");
  }
  m_impl->verify = mode;
  m_impl->apply_verify();
}

ssl_verify ssl_context::verify_mode() const noexcept { return m_impl->verify; }

void ssl_context::set_check_hostname(bool check) {
  m_impl->check_hostname = check;
  if (check && m_impl->verify == ssl_verify::none) {
    m_impl->verify = ssl_verify::required;
    m_impl->apply_verify();
  }
}

bool ssl_context::check_hostname() const noexcept { return m_impl->check_hostname; }

void* ssl_context::native_handle() const noexcept { return m_impl->ctx; }

} // namespace simul

namespace simul::detail {

namespace {

bool is_ip_address(const std::string& host) {
  std::array<unsigned char, sizeof(in6_addr)> buf{};
  return ::inet_pton(AF_INET, host.c_str(), buf.data()) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf.data()) == 1;
}

} // namespace

tls_session::tls_session(const ssl_context& context, std::string hostname, std::string peer)
    : m_context(context), m_peer(std::move(peer)) {
  const auto& ctx = *context.internals();
  ERR_clear_error();
  m_ssl = SSL_new(ctx.ctx);
  BIO* in = m_ssl != nullptr ? BIO_new(BIO_s_mem()) : nullptr;
  BIO* out = in != nullptr ? BIO_new(BIO_s_mem()) : nullptr;
  if (out == nullptr) {
    BIO_free(in);
    SSL_free(m_ssl);
    throw_openssl("TLS with", m_peer);
  }
  // An empty input buffer means "wait for more", not the end of the stream:
  // the socket's EOF is the stream's business.
  BIO_set_mem_eof_return(in, -1);
  SSL_set_bio(m_ssl, in, out); // the SSL object owns both now
  if (ctx.server) {
    SSL_set_app_data(m_ssl, this); // for the server-name callback
    SSL_set_accept_state(m_ssl);
    return;
  }
  SSL_set_connect_state(m_ssl);
  const bool ip = is_ip_address(hostname);
  bool ok = true;
  if (!hostname.empty() && !ip) {
    ok = SSL_set_tlsext_host_name(m_ssl, hostname.c_str()) == 1; // SNI is for names only (RFC 6066)
  }
  if (ok && ctx.check_hostname) {
    ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(m_ssl), hostname.c_str()) == 1
            : SSL_set1_host(m_ssl, hostname.c_str()) == 1;
    SSL_set_hostflags(m_ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  }
  if (!ok) {
    SSL_free(m_ssl);
    throw_openssl("TLS with " + m_peer + ": cannot use the server name", hostname);
  }
}

tls_session::~tls_session() { SSL_free(m_ssl); }

tls_session::state tls_session::receive(std::string_view cipher, std::string& plain) {
  if (m_state == state::failed || m_state == state::closed) {
    return m_state;
  }
  if (!cipher.empty()) {
    std::size_t written = 0;
    if (BIO_write_ex(SSL_get_rbio(m_ssl), cipher.data(), cipher.size(), &written) != 1) {
      fail_from_openssl(SSL_ERROR_SSL, "read from");
      return m_state;
    }
  }
  if (m_state == state::handshaking) {
    handshake();
  }
  if (m_state == state::open) {
    read_records(plain);
  }
  return m_state;
}

void tls_session::handshake() {
  ERR_clear_error();
  const int rc = SSL_do_handshake(m_ssl);
  if (rc == 1) {
    m_state = state::open;
    return;
  }
  const int err = SSL_get_error(m_ssl, rc);
  if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
    fail_from_openssl(err, "TLS handshake with");
  }
}

void tls_session::read_records(std::string& plain) {
  std::array<char, 16 * 1024> buf; // one TLS record's worth
  for (;;) {
    ERR_clear_error();
    std::size_t n = 0;
    const int rc = SSL_read_ex(m_ssl, buf.data(), buf.size(), &n);
    if (rc == 1) {
      plain.append(buf.data(), n);
      continue;
    }
    const int err = SSL_get_error(m_ssl, rc);
    if (err == SSL_ERROR_ZERO_RETURN) {
      m_state = state::closed;
    } else if (err != SSL_ERROR_WANT_READ) {
      fail_from_openssl(err, "read from");
    }
    return;
  }
}

void tls_session::send(std::string_view plain) {
  if (m_state == state::failed) {
    std::rethrow_exception(m_failure);
  }
  if (m_state == state::handshaking) {
    throw error("TLS with " + m_peer + ": write before the handshake finished");
  }
  ERR_clear_error();
  std::size_t written = 0;
  if (const int rc = SSL_write_ex(m_ssl, plain.data(), plain.size(), &written); rc != 1) {
    fail_from_openssl(SSL_get_error(m_ssl, rc), "write to");
    std::rethrow_exception(m_failure);
  }
}

void tls_session::close_notify() noexcept {
  if (m_state == state::open || m_state == state::closed) {
    ERR_clear_error();
    SSL_shutdown(m_ssl);
    ERR_clear_error();
  }
}

std::string tls_session::take_output() {
  BIO* out = SSL_get_wbio(m_ssl);
  std::string bytes(BIO_ctrl_pending(out), '\0');
  std::size_t read = 0;
  if (!bytes.empty() && BIO_read_ex(out, bytes.data(), bytes.size(), &read) == 1) {
    bytes.resize(read);
  }
  return bytes;
}

void tls_session::fail(std::exception_ptr error) noexcept {
  if (m_state != state::failed) {
    m_state = state::failed;
    m_failure = std::move(error);
  }
}

void tls_session::fail_from_openssl(int ssl_error_code, const char* during) noexcept {
  try {
    const std::string where = std::string(during) + " " + m_peer;
    const unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      const long result = SSL_get_verify_result(m_ssl);
      const std::string why = X509_verify_cert_error_string(result);
      fail(std::make_exception_ptr(
          ssl_certificate_error(where + ": certificate verify failed: " + why, m_peer, why, result)));
    } else if (e == 0 && ssl_error_code == SSL_ERROR_SYSCALL) {
      const std::string why = "the TLS stream ended unexpectedly";
      fail(std::make_exception_ptr(ssl_error(where + ": " + why, m_peer, why)));
    } else {
      const auto why = openssl_reason();
      fail(std::make_exception_ptr(ssl_error(where + ": " + why, m_peer, why)));
    }
  } catch (...) {
    fail(std::current_exception());
  }
  ERR_clear_error();
}

int tls_session::on_server_name(int* alert) noexcept {
  try {
    const auto& callback = m_context.internals()->sni;
    if (!callback) {
      return SSL_TLSEXT_ERR_OK;
    }
    const char* name = SSL_get_servername(m_ssl, TLSEXT_NAMETYPE_host_name);
    auto chosen = callback(name == nullptr ? std::string_view() : std::string_view(name));
    if (chosen) {
      if (!chosen->is_server()) {
        throw error("the server-name callback returned a client context for " + m_peer);
      }
      m_chosen = std::move(chosen);
      ERR_clear_error();
      if (SSL_set_SSL_CTX(m_ssl, m_chosen->internals()->ctx) == nullptr) {
        throw_openssl("the server-name callback's context cannot serve", m_peer);
      }
    }
    return SSL_TLSEXT_ERR_OK;
  } catch (...) {
    m_callback_error = std::current_exception();
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
}

std::string tls_session::info(std::string_view name) const {
  if (m_state == state::handshaking) {
    return {};
  }
  if (name == "cipher") {
    return SSL_get_cipher_name(m_ssl);
  }
  if (name == "ssl_version") {
    return SSL_get_version(m_ssl);
  }
  if (name == "alpn_protocol") {
    const unsigned char* chosen = nullptr;
    unsigned int length = 0;
    SSL_get0_alpn_selected(m_ssl, &chosen, &length);
    return chosen == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(chosen), length);
  }
  if (name == "server_name") {
    const char* sni = SSL_get_servername(m_ssl, TLSEXT_NAMETYPE_host_name);
    return sni == nullptr ? std::string() : std::string(sni);
  }
  if (name != "peercert") {
    return {};
  }
  X509* cert = SSL_get0_peer_certificate(m_ssl);
  if (cert == nullptr) {
    return {};
  }
  BIO* text = BIO_new(BIO_s_mem());
  if (text == nullptr) {
    return {};
  }
  X509_NAME_print_ex(text, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long size = BIO_get_mem_data(text, &data);
  std::string subject(data, static_cast<std::size_t>(size));
  BIO_free(text);
  return subject;
}

} // namespace simul::detail
