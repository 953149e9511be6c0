// The raw libuv side of L4, written against libuv's C API only: write from
// the read callback (uv_try_write, uv_write for what the socket refuses).

#include "servers.hpp"

#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

char g_buffer[64 * 1024];

struct pending_write {
  uv_write_t req;
  char data[1];
};

void on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) { *buf = uv_buf_init(g_buffer, sizeof g_buffer); }

void on_close(uv_handle_t* h) { std::free(h); }

void on_written(uv_write_t* req, int) { std::free(req); }

void on_read(uv_stream_t* client, ssize_t nread, const uv_buf_t* buf) {
  if (nread < 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(client), on_close);
    return;
  }
  if (nread == 0) {
    return;
  }
  uv_buf_t out = uv_buf_init(buf->base, static_cast<unsigned>(nread));
  int sent = uv_try_write(client, &out, 1);
  if (sent == UV_EAGAIN) {
    sent = 0;
  }
  if (sent < 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(client), on_close);
    return;
  }
  if (sent < nread) {
    const size_t rest = static_cast<size_t>(nread - sent);
    auto* w = static_cast<pending_write*>(std::malloc(sizeof(pending_write) + rest));
    std::memcpy(w->data, buf->base + sent, rest);
    uv_buf_t tail = uv_buf_init(w->data, static_cast<unsigned>(rest));
    uv_write(&w->req, client, &tail, 1, on_written);
  }
}

void on_connection(uv_stream_t* server, int status) {
  if (status < 0) {
    return;
  }
  auto* client = static_cast<uv_tcp_t*>(std::malloc(sizeof(uv_tcp_t)));
  uv_tcp_init(server->loop, client);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(client)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(client), on_close);
    return;
  }
  uv_tcp_nodelay(client, 1);
  uv_read_start(reinterpret_cast<uv_stream_t*>(client), on_alloc, on_read);
}

} // namespace

int serve_raw_libuv() {
  uv_loop_t* loop = uv_default_loop();
  uv_tcp_t server;
  uv_tcp_init(loop, &server);
  sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_bind(&server, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (uv_listen(reinterpret_cast<uv_stream_t*>(&server), 128, on_connection) != 0) {
    return 1;
  }
  sockaddr_in bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&server, reinterpret_cast<sockaddr*>(&bound), &len);
  std::printf("PORT %d\n", ntohs(bound.sin_port));
  std::fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
