#pragma once
// moved to <simul/loop/io/socket_fd.hpp>; this path keeps working
#include <simul/loop/io/socket_fd.hpp>
