#include "report.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>
#include <stdexcept>

namespace compare {

namespace {

std::string fixed(double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", digits, value);
  return buffer;
}

std::string escape_json(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out;
}

std::string escape_xml(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
    case '<':
      out += "&lt;";
      break;
    case '>':
      out += "&gt;";
      break;
    case '&':
      out += "&amp;";
      break;
    default:
      out += c;
    }
  }
  return out;
}

const char* workload_title(const std::string& workload) {
  return workload == "cpu" ? "CPU-bound: count primes" : "I/O-bound: many waits";
}

// Finds "key": in a flat JSON object and returns the raw value text.
std::string field(const std::string& line, const std::string& key) {
  const auto at = line.find("\"" + key + "\"");
  if (at == std::string::npos) {
    throw std::runtime_error("python side: no field '" + key + "' in: " + line);
  }
  auto start = line.find(':', at) + 1;
  while (start < line.size() && line[start] == ' ') {
    ++start;
  }
  if (line[start] == '"') {
    const auto end = line.find('"', start + 1);
    return line.substr(start + 1, end - start - 1);
  }
  const auto end = line.find_first_of(",}", start);
  return line.substr(start, end - start);
}

} // namespace

void compute_speedups(std::vector<measurement>& results, int cores) {
  std::map<std::pair<std::string, std::string>, double> sequential;
  for (const auto& m : results) {
    if (m.mode == "sequential") {
      sequential[{m.workload, m.runtime}] = m.wall_seconds;
    }
  }
  for (auto& m : results) {
    const auto base = sequential.find({m.workload, m.runtime});
    m.speedup = base != sequential.end() && m.wall_seconds > 0 ? base->second / m.wall_seconds : 0;
    // Waits overlap without limit, computation only up to the cores (5% for
    // the clock's resolution and the machine's drift).
    m.suspect = m.workload == "cpu" && m.speedup > cores * 1.05;
  }
}

std::string format_table(const std::vector<measurement>& results, int cores) {
  std::ostringstream out;
  const int runs = results.empty() ? 1 : results.front().runs;
  out << "machine: " << cores << " cores; the median of " << runs << (runs == 1 ? " round" : " interleaved rounds")
      << " after a warm-up; speedup is over the same runtime's sequential run;\n"
      << "CPU busy is the whole machine's, in % of all cores, while the run lasted\n";
  bool any_suspect = false;
  std::string last;
  for (const auto& m : results) {
    if (m.workload != last) {
      last = m.workload;
      out << "\n" << workload_title(m.workload) << "\n";
      char header[160];
      std::snprintf(header, sizeof header, "  %-7s %-13s %-22s %10s %8s %9s %12s\n", "runtime", "mode", "setup",
                    "wall (s)", "speedup", "CPU busy", "answer");
      out << header;
    }
    char row[200];
    std::snprintf(row, sizeof row, "  %-7s %-13s %-22s %10.3f %7.2fx%s %7.0f%% %12ld\n", m.runtime.c_str(),
                  m.mode.c_str(), m.setup.c_str(), m.wall_seconds, m.speedup, m.suspect ? "?" : " ", m.cpu_busy * 100,
                  m.check);
    out << row;
    any_suspect = any_suspect || m.suspect;
  }
  if (any_suspect) {
    out << "\n? suspect: a CPU-bound speedup above the core count is more than the machine can give; the\n"
        << "  sequential baseline was slowed (by a neighbour, frequency scaling): run again on a quiet machine\n";
  }
  return out.str();
}

std::string format_json(const std::vector<measurement>& results, int cores, const std::string& sizes_name) {
  std::ostringstream out;
  out << "{\n  \"cores\": " << cores << ",\n  \"sizes\": \"" << sizes_name << "\",\n  \"results\": [\n";
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& m = results[i];
    out << "    {\"workload\": \"" << m.workload << "\", \"runtime\": \"" << m.runtime << "\", \"mode\": \""
        << escape_json(m.mode) << "\", \"setup\": \"" << escape_json(m.setup)
        << "\", \"wall_seconds\": " << fixed(m.wall_seconds, 6) << ", \"speedup\": " << fixed(m.speedup, 4)
        << ", \"cpu_busy\": " << fixed(m.cpu_busy, 4) << ", \"check\": " << m.check << ", \"runs\": " << m.runs
        << ", \"suspect\": " << (m.suspect ? "true" : "false") << "}" << (i + 1 < results.size() ? "," : "") << "\n";
  }
  out << "  ]\n}\n";
  return out.str();
}

std::string format_svg(const std::vector<measurement>& results, int cores) {
  // Layout: one panel per workload, one row per mode, one bar per runtime.
  std::vector<std::string> workloads;
  std::vector<std::string> modes;
  bool has_python = false;
  for (const auto& m : results) {
    if (std::find(workloads.begin(), workloads.end(), m.workload) == workloads.end()) {
      workloads.push_back(m.workload);
    }
    if (std::find(modes.begin(), modes.end(), m.mode) == modes.end()) {
      modes.push_back(m.mode);
    }
    has_python = has_python || m.runtime == "python";
  }
  const int runtimes = has_python ? 2 : 1;
  const double bar = 16, gap = 10, label_width = 130, plot_width = 560, left = 20, top = 70;
  const double row_height = runtimes * bar + gap;
  const double panel_height = static_cast<double>(modes.size()) * row_height + 60;
  const double width = left + label_width + plot_width + 90;
  const double height = top + static_cast<double>(workloads.size()) * panel_height + 40;
  const char* colour_simul = "#2b6cb0";
  const char* colour_python = "#dd8a2e";

  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << left << "\" y=\"28\" font-size=\"18\" font-weight=\"bold\">"
      << "Same work, five ways: speedup over sequential (higher is better)</text>\n"
      << "<text x=\"" << left << "\" y=\"48\" fill=\"#555\">" << cores
      << " cores. Each runtime against its own sequential run; medians of "
      << (results.empty() ? 1 : results.front().runs) << " interleaved rounds. Made by simul-compare.</text>\n";
  // Legend.
  const double legend_x = width - 200;
  svg << "<rect x=\"" << legend_x << "\" y=\"38\" width=\"12\" height=\"12\" fill=\"" << colour_simul << "\"/>"
      << "<text x=\"" << legend_x + 18 << "\" y=\"48\">simul (C++)</text>\n";
  if (has_python) {
    svg << "<rect x=\"" << legend_x + 100 << "\" y=\"38\" width=\"12\" height=\"12\" fill=\"" << colour_python
        << "\"/><text x=\"" << legend_x + 118 << "\" y=\"48\">Python</text>\n";
  }
  for (std::size_t w = 0; w < workloads.size(); ++w) {
    const double panel_top = top + static_cast<double>(w) * panel_height;
    const double plot_top = panel_top + 24;
    const double plot_bottom = plot_top + static_cast<double>(modes.size()) * row_height;
    // Each panel has its own scale (CPU speed-ups are a few x, waits many
    // tens): a round maximum (2, 5, 10, 20, ...) so the ticks read easily.
    double max_speedup = 1;
    for (const auto& m : results) {
      if (m.workload == workloads[w]) {
        max_speedup = std::max(max_speedup, m.speedup);
      }
    }
    double axis_max = 2;
    while (axis_max < max_speedup * 1.1) {
      axis_max = axis_max < 5 ? 5 : axis_max * 2;
    }
    const auto x_of = [&](double speedup) { return left + label_width + plot_width * speedup / axis_max; };
    svg << "<text x=\"" << left << "\" y=\"" << panel_top + 14 << "\" font-size=\"14\" font-weight=\"bold\">"
        << workload_title(workloads[w]) << "</text>\n";
    // Grid and x axis.
    for (int t = 0; t <= 5; ++t) {
      const double value = axis_max * t / 5;
      const double x = x_of(value);
      svg << "<line x1=\"" << x << "\" y1=\"" << plot_top << "\" x2=\"" << x << "\" y2=\"" << plot_bottom
          << "\" stroke=\"#e2e2e2\"/>\n"
          << "<text x=\"" << x << "\" y=\"" << plot_bottom + 14 << "\" text-anchor=\"middle\" fill=\"#555\">"
          << fixed(value, value < 10 ? 1 : 0) << "x</text>\n";
    }
    svg << "<line x1=\"" << x_of(1) << "\" y1=\"" << plot_top - 4 << "\" x2=\"" << x_of(1) << "\" y2=\"" << plot_bottom
        << "\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>\n"
        << "<text x=\"" << left + label_width + plot_width / 2 << "\" y=\"" << plot_bottom + 30
        << "\" text-anchor=\"middle\" fill=\"#333\">speedup over sequential (dashed line: 1x, no gain)</text>\n";
    for (std::size_t r = 0; r < modes.size(); ++r) {
      const double row_top = plot_top + static_cast<double>(r) * row_height;
      svg << "<text x=\"" << left + label_width - 8 << "\" y=\"" << row_top + runtimes * bar / 2 + 4
          << "\" text-anchor=\"end\">" << escape_xml(modes[r]) << "</text>\n";
      int slot = 0;
      for (const char* runtime : {"simul", "python"}) {
        for (const auto& m : results) {
          if (m.workload != workloads[w] || m.mode != modes[r] || m.runtime != runtime) {
            continue;
          }
          const double y = row_top + slot * bar;
          const double x0 = left + label_width;
          svg << "<rect x=\"" << x0 << "\" y=\"" << y << "\" width=\"" << std::max(1.0, x_of(m.speedup) - x0)
              << "\" height=\"" << bar - 2 << "\" fill=\"" << (m.runtime == "simul" ? colour_simul : colour_python)
              << "\"><title>"
              << escape_xml(m.runtime + " " + m.mode + " (" + m.setup + "): " + fixed(m.wall_seconds, 3) + " s")
              << "</title></rect>\n"
              << "<text x=\"" << x_of(m.speedup) + 4 << "\" y=\"" << y + bar - 5 << "\" fill=\"#222\">"
              << fixed(m.speedup, m.speedup < 10 ? 2 : 1) << "x (" << fixed(m.wall_seconds, 2) << " s)"
              << (m.suspect ? " suspect: above the core count" : "") << "</text>\n";
        }
        if (std::string(runtime) == "simul" || has_python) {
          ++slot;
        }
      }
    }
  }
  svg << "</svg>\n";
  return svg.str();
}

std::vector<measurement> parse_python_lines(const std::string& text) {
  std::vector<measurement> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') {
      continue;
    }
    measurement m;
    m.runtime = "python";
    m.workload = field(line, "workload");
    m.mode = field(line, "mode");
    m.setup = field(line, "setup");
    m.wall_seconds = std::stod(field(line, "wall_seconds"));
    m.cpu_busy = std::stod(field(line, "cpu_busy"));
    m.check = std::stol(field(line, "check"));
    out.push_back(m);
  }
  return out;
}

} // namespace compare
