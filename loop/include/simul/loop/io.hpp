#pragma once

// The loop's I/O, all in one include. See docs/loop-io.md for the guide.
//
// - <simul/loop/io_error.hpp>  io_error, connection_error, dns_error,
//                              incomplete_read_error, limit_overrun_error
// - <simul/loop/stream.hpp>    stream_reader, stream_writer
// - <simul/loop/server.hpp>    open_connection, start_server, server, and the Unix twins
//
// libuv stays private: none of these headers includes <uv.h>.

#include <simul/loop/io_error.hpp>
#include <simul/loop/server.hpp>
#include <simul/loop/stream.hpp>
