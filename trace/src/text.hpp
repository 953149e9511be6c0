#pragma once

// Text helpers shared by the JSON and SVG writers (private).

#include <simul/trace.hpp>

#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>

namespace simul::detail {

/// Appends `text` as the inside of a JSON string: quotes, backslashes and
/// control characters escaped, bytes that are not UTF-8 replaced by U+FFFD.
void append_json_string(std::string& out, std::string_view text);
/// Appends `text` escaped for XML character data and attribute values.
void append_xml_text(std::string& out, std::string_view text);
/// Writes `content` to `path`; throws simul::trace_error on failure.
void write_file(const std::string& path, const std::string& content);
/// Microseconds with three decimals ("12.345").
std::string micros(std::int64_t ns);

} // namespace simul::detail
