#pragma once
// moved to <simul/loop/io/dns.hpp>; this path keeps working
#include <simul/loop/io/dns.hpp>
