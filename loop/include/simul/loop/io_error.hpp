#pragma once
// moved to <simul/loop/io/io_error.hpp>; this path keeps working
#include <simul/loop/io/io_error.hpp>
