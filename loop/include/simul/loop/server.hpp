#pragma once
// moved to <simul/loop/io/server.hpp> and <simul/loop/io/connection.hpp>; this path keeps working
#include <simul/loop/io/connection.hpp>
#include <simul/loop/io/server.hpp>
