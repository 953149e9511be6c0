#pragma once
// moved to <simul/loop/io/ssl.hpp>; this path keeps working
#include <simul/loop/io/ssl.hpp>
