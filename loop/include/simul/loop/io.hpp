#pragma once

// The loop's I/O, all in one include. See docs/loop-io.md for the guide.
//
// - <simul/loop/io_error.hpp>  io_error, connection_error, dns_error, ssl_error,
//                              ssl_certificate_error, incomplete_read_error,
//                              limit_overrun_error
// - <simul/loop/stream.hpp>    stream_reader, stream_writer
// - <simul/loop/server.hpp>    open_connection, start_server, server, and the Unix twins
// - <simul/loop/dns.hpp>       getaddrinfo, getnameinfo
// - <simul/loop/udp.hpp>       create_datagram_endpoint, datagram_endpoint
// - <simul/loop/socket_fd.hpp> socket_fd: an open socket to adopt (asyncio's sock=)
// - <simul/loop/ssl.hpp>       ssl_context: TLS for streams (asyncio's ssl=)
// - <simul/loop/files.hpp>     open_file, file, read_file, write_file, stat_file, remove_file
// - <simul/loop/signals.hpp>   add_signal_handler, remove_signal_handler
// - <simul/loop/subprocess.hpp> create_subprocess_exec, process, stdio
//
// libuv stays private: none of these headers includes <uv.h>.

#include <simul/loop/dns.hpp>
#include <simul/loop/files.hpp>
#include <simul/loop/io_error.hpp>
#include <simul/loop/server.hpp>
#include <simul/loop/signals.hpp>
#include <simul/loop/socket_fd.hpp>
#include <simul/loop/ssl.hpp>
#include <simul/loop/stream.hpp>
#include <simul/loop/subprocess.hpp>
#include <simul/loop/udp.hpp>
