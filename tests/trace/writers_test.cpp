// The writers: JSON that parses and follows the trace-event format with every
// name escaped, SVG that is well-formed XML, and the errors when a file cannot
// be written. python's json and xml.etree judge (check_trace.py).

#include "trace_test_util.hpp"

#include <simul/trace.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace {

// Quotes, a backslash, control characters, markup, UTF-8 and a broken byte.
const std::vector<std::string> k_hostile = {"say \"hi\"",       "back\\slash", "tab\tnew\nline\x01",
                                            "<b>&amp;</b> 'x'", "caf\xC3\xA9", "bad \xFF byte"};
// What a reader sees of them: the broken byte becomes U+FFFD.
const char* const k_seen_json = R"(["say \"hi\"", "back\\slash", "tab\tnew\nline\u0001", "<b>&amp;</b> 'x'",
                                   "caf\u00e9", "bad \ufffd byte"])";

void record_hostile_names() {
  simul::trace::start();
  for (const auto& name : k_hostile) {
    const simul::trace::span s(name);
  }
  simul::trace::stop();
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(TraceWriters, JsonParsesFollowsTheFormatAndEscapesEveryName) {
  record_hostile_names();
  const auto path = trace_test::temp_file("hostile.json");
  const auto names = trace_test::temp_file("hostile_names.json");
  simul::trace::write_json(path);
  write_text(names, k_seen_json);
  EXPECT_EQ(trace_test::check_file("json", path, "@" + names), 0);
  // The checker can fail: a name that is not there.
  EXPECT_NE(trace_test::check_file("json", path, "absent-name"), 0);
  std::remove(path.c_str());
  std::remove(names.c_str());
}

TEST(TraceWriters, SvgIsWellFormedXmlWithTheLanesDrawn) {
  record_hostile_names();
  const auto path = trace_test::temp_file("hostile.svg");
  simul::trace::write_svg(path);
  // Lane labels: the control characters become spaces in XML.
  EXPECT_EQ(trace_test::check_file("svg", path, "'say \"hi\"' '<b>&amp;</b> '\"'\"'x'\"'\"'' running"), 0);
  std::remove(path.c_str());
}

TEST(TraceWriters, SectionsShareOneTimeAxis) {
  simul::trace::start();
  { const simul::trace::span s("first"); }
  simul::trace::stop();
  auto one = simul::trace::collect();
  simul::trace::start();
  { const simul::trace::span s("second"); }
  simul::trace::stop();
  auto two = simul::trace::collect();
  const auto path = trace_test::temp_file("sections.svg");
  simul::trace::write_svg(path, {{"synchronous", one}, {"asynchronous", two}});
  EXPECT_EQ(trace_test::check_file("svg", path, "synchronous asynchronous first second"), 0);
  std::remove(path.c_str());
}

TEST(TraceWriters, AnUnwritablePathIsATraceError) {
  record_hostile_names();
  EXPECT_THROW(simul::trace::write_json("/nonexistent-dir/x.json"), simul::trace_error);
  EXPECT_THROW(simul::trace::write_svg("/nonexistent-dir/x.svg"), simul::trace_error);
  try {
    simul::trace::write_json("/nonexistent-dir/x.json");
  } catch (const simul::trace_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x.json"), std::string::npos) << e.what();
  }
}

TEST(TraceWriters, EmptyTraceWritesValidFiles) {
  simul::trace::start();
  simul::trace::stop();
  const auto svg = trace_test::temp_file("empty.svg");
  simul::trace::write_svg(svg);
  EXPECT_EQ(trace_test::check_file("svg", svg), 0);
  std::remove(svg.c_str());
}

} // namespace
