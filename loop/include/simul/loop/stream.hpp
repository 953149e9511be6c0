#pragma once
// moved to <simul/loop/io/stream.hpp>; this path keeps working
#include <simul/loop/io/stream.hpp>
