#pragma once

// The echo servers compared by the L4 benchmark. Each binds 127.0.0.1 on a
// free port, prints "PORT <n>" on stdout and echoes until it is killed.

int serve_simul();
int serve_raw_libuv();
int serve_asio();
