#pragma once

// The loop's I/O, all in one include. See docs/loop-io.md for the guide.
// Each header lives in <simul/loop/io/>, beside its source in loop/src/io/.
//
// - <simul/loop/io/io_error.hpp>   io_error, connection_error, dns_error, ssl_error,
//                                  ssl_certificate_error, incomplete_read_error,
//                                  limit_overrun_error
// - <simul/loop/io/stream.hpp>     stream_reader, stream_writer
// - <simul/loop/io/connection.hpp> open_connection, open_unix_connection
// - <simul/loop/io/server.hpp>     start_server, start_unix_server, server
// - <simul/loop/io/dns.hpp>        getaddrinfo, getnameinfo
// - <simul/loop/io/udp.hpp>        create_datagram_endpoint, datagram_endpoint
// - <simul/loop/io/socket_fd.hpp>  socket_fd: an open socket to adopt (asyncio's sock=)
// - <simul/loop/io/ssl.hpp>        ssl_context: TLS for streams (asyncio's ssl=)
// - <simul/loop/io/files.hpp>      open_file, file, read_file, write_file, stat_file, remove_file
// - <simul/loop/io/signals.hpp>    add_signal_handler, remove_signal_handler
// - <simul/loop/io/subprocess.hpp> create_subprocess_exec, process, stdio
//
// The old paths (<simul/loop/stream.hpp>, <simul/loop/server.hpp>, ...) keep
// working: each includes its new header.
//
// libuv stays private: none of these headers includes <uv.h>.

#include <simul/loop/io/connection.hpp>
#include <simul/loop/io/dns.hpp>
#include <simul/loop/io/files.hpp>
#include <simul/loop/io/io_error.hpp>
#include <simul/loop/io/server.hpp>
#include <simul/loop/io/signals.hpp>
#include <simul/loop/io/socket_fd.hpp>
#include <simul/loop/io/ssl.hpp>
#include <simul/loop/io/stream.hpp>
#include <simul/loop/io/subprocess.hpp>
#include <simul/loop/io/udp.hpp>
