#pragma once
// moved to <simul/loop/io/udp.hpp>; this path keeps working
#include <simul/loop/io/udp.hpp>
