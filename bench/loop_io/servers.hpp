#pragma once

// The echo servers compared by the L4 benchmark. Each binds 127.0.0.1 on a
// free port, prints "PORT <n>" on stdout and echoes until it is killed. With
// `tls`, the simul and Asio servers speak TLS with the test certificate in
// data/tls (SIMUL_TLS_DATA_DIR).

int serve_simul(bool tls);
int serve_raw_libuv();
int serve_asio(bool tls);
