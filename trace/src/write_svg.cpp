// write_svg: a standalone timeline. Each section is drawn from its own start
// on one time scale shared by all sections, its lanes one under the other
// with a label; run slices are thick bars coloured by task, waits thin bars,
// a task's life a hairline. Slices closer together than half a pixel are
// merged, so a long trace stays a small file.

#include "text.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace simul::trace {
namespace {

constexpr double k_label_width = 230;
constexpr double k_plot_width = 960;
constexpr double k_margin = 16;
constexpr double k_lane_height = 16;
constexpr std::size_t k_max_task_lanes = 32;

using detail::append_xml_text;

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string duration_text(double ns) {
  char buf[32];
  if (ns == 0) {
    return "0";
  }
  if (ns >= 1e9) {
    std::snprintf(buf, sizeof buf, "%g s", ns / 1e9);
  } else if (ns >= 1e6) {
    std::snprintf(buf, sizeof buf, "%g ms", ns / 1e6);
  } else if (ns >= 1e3) {
    std::snprintf(buf, sizeof buf, "%g us", ns / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%g ns", ns);
  }
  return buf;
}

// 1, 2 or 5 times a power of ten, giving about eight ticks over `span`.
double tick_step(double span) {
  const double raw = std::max(span / 8, 1.0);
  const double power = std::pow(10, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * power >= raw) {
      return m * power;
    }
  }
  return 10 * power;
}

// A stable colour per task number.
std::string colour(std::uint64_t task) {
  auto h = task * 0x9E3779B97F4A7C15ULL;
  h ^= h >> 29;
  return "hsl(" + std::to_string(h % 360) + ",62%," + std::to_string(42 + (h >> 20) % 16) + "%)";
}

class svg_writer {
 public:
  explicit svg_writer(const std::vector<svg_section>& sections) : m_sections(sections) {
    double longest = 1;
    for (const auto& s : sections) {
      longest = std::max(longest, static_cast<double>(s.data.end - s.data.begin));
    }
    m_span = longest;
    m_scale = k_plot_width / longest;
  }

  std::string write() {
    double y = k_margin;
    for (const auto& s : m_sections) {
      y = section(s, y) + k_margin;
    }
    legend(y);
    y += 24;
    const double width = k_label_width + k_plot_width + 2 * k_margin;
    return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
           number(width) + "\" height=\"" + number(y) + "\" viewBox=\"0 0 " + number(width) + " " + number(y) +
           "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n" +
           m_body + "</svg>\n";
  }

 private:
  double x_of(std::int64_t t, std::int64_t origin) const {
    return k_margin + k_label_width + static_cast<double>(t - origin) * m_scale;
  }

  double section(const svg_section& s, double y) {
    m_body +=
        "<text x=\"" + number(k_margin) + "\" y=\"" + number(y + 12) + "\" font-size=\"14\" font-weight=\"bold\">";
    append_xml_text(m_body, s.title);
    m_body += "</text>\n";
    y += 20;
    y = axis(s.data, y);
    std::size_t tasks = 0;
    std::size_t hidden = 0;
    for (const auto& l : s.data.lanes) {
      if (l.task != 0 && ++tasks > k_max_task_lanes) {
        ++hidden;
        continue;
      }
      draw_lane(l, s.data.begin, y);
      y += k_lane_height;
    }
    if (hidden != 0) {
      m_body += "<text x=\"" + number(k_margin) + "\" y=\"" + number(y + 11) + "\" fill=\"#555\">" +
                std::to_string(hidden) + " more task lanes not drawn</text>\n";
      y += k_lane_height;
    }
    return y;
  }

  double axis(const timeline& t, double y) {
    const double span = static_cast<double>(t.end - t.begin);
    const double step = tick_step(m_span);
    const double left = x_of(t.begin, t.begin);
    m_body += "<line x1=\"" + number(left) + "\" y1=\"" + number(y + 14) + "\" x2=\"" + number(left + span * m_scale) +
              "\" y2=\"" + number(y + 14) + "\" stroke=\"#333\"/>\n";
    // The section's length at the end of its axis, unless a tick is close (70 px).
    if (std::fmod(span, step) * m_scale > 70) {
      const double x = left + span * m_scale;
      m_body += "<line x1=\"" + number(x) + "\" y1=\"" + number(y + 10) + "\" x2=\"" + number(x) + "\" y2=\"" +
                number(y + 14) + "\" stroke=\"#333\"/><text x=\"" + number(x) + "\" y=\"" + number(y + 8) +
                "\" text-anchor=\"end\" fill=\"#333\" font-style=\"italic\">" +
                duration_text(std::round(span / 1e3) * 1e3) + "</text>\n";
    }
    for (double tick = 0; tick <= span + 0.5; tick += step) {
      const double x = left + tick * m_scale;
      m_body += "<line x1=\"" + number(x) + "\" y1=\"" + number(y + 10) + "\" x2=\"" + number(x) + "\" y2=\"" +
                number(y + 14) + "\" stroke=\"#333\"/><text x=\"" + number(x) + "\" y=\"" + number(y + 8) +
                "\" text-anchor=\"middle\" fill=\"#333\">" + duration_text(tick) + "</text>\n";
    }
    return y + 18;
  }

  void lane_label(const lane& l, double y) {
    m_body += "<text x=\"" + number(k_margin) + "\" y=\"" + number(y + 11) + "\">";
    std::string label = l.task != 0 ? l.name : l.name + (l.tid != 0 ? " (" + std::to_string(l.tid) + ")" : "");
    if (label.size() > 36) {
      label = label.substr(0, 35) + "~";
    }
    append_xml_text(m_body, label);
    if (!l.where.empty()) {
      m_body += "<title>";
      append_xml_text(m_body, l.where);
      m_body += "</title>";
    }
    m_body += "</text>\n";
  }

  struct pending {
    double x0 = 0, x1 = -1;
    slice::kind what = slice::kind::run;
    std::uint64_t task = 0;
    std::string title;
  };

  void draw_lane(const lane& l, std::int64_t origin, double y) {
    lane_label(l, y);
    m_body += "<line x1=\"" + number(k_margin) + "\" y1=\"" + number(y + k_lane_height - 0.5) + "\" x2=\"" +
              number(k_margin + k_label_width + k_plot_width) + "\" y2=\"" + number(y + k_lane_height - 0.5) +
              "\" stroke=\"#eee\"/>\n";
    for (const auto what : {slice::kind::task, slice::kind::wait, slice::kind::run}) {
      pending p;
      for (const auto& s : l.slices) {
        if (s.what == what) {
          add(p, s, x_of(s.begin, origin), x_of(s.end, origin), y);
        }
      }
      flush(p, y);
    }
    for (const auto& s : l.slices) {
      if (s.what == slice::kind::dropped) {
        m_body += "<text x=\"" + number(x_of(s.begin, origin)) + "\" y=\"" + number(y + 11) + "\" fill=\"#c00\">";
        append_xml_text(m_body, "\xE2\x96\xB2 " + s.name);
        m_body += "</text>\n";
      }
    }
  }

  void add(pending& p, const slice& s, double x0, double x1, double y) {
    if (p.x1 >= 0 && x0 - p.x1 < 0.5 && (p.x1 - p.x0 < 1 || p.task == s.task)) {
      p.x1 = std::max(p.x1, x1); // too close to tell apart: one mark
      return;
    }
    flush(p, y);
    p = pending{x0, x1, s.what, s.task, s.name + " " + duration_text(static_cast<double>(s.end - s.begin))};
  }

  void flush(pending& p, double y) {
    if (p.x1 < 0) {
      return;
    }
    const double w = std::max(p.x1 - p.x0, 0.6);
    if (p.what == slice::kind::task) {
      m_body += "<rect x=\"" + number(p.x0) + "\" y=\"" + number(y + 7.5) + "\" width=\"" + number(w) +
                "\" height=\"1\" fill=\"#bbb\"/>\n";
    } else {
      const bool run = p.what == slice::kind::run;
      m_body += "<rect x=\"" + number(p.x0) + "\" y=\"" + number(y + (run ? 2 : 6.5)) + "\" width=\"" + number(w) +
                "\" height=\"" + (run ? "12" : "3") + "\" fill=\"" + colour(p.task) + "\"" +
                (run ? "" : " fill-opacity=\"0.45\"") + "><title>";
      append_xml_text(m_body, (run ? "" : "wait: ") + p.title);
      m_body += "</title></rect>\n";
    }
    p.x1 = -1;
  }

  void legend(double y) {
    const double x = k_margin;
    m_body += "<rect x=\"" + number(x) + "\" y=\"" + number(y) +
              "\" width=\"18\" height=\"12\" fill=\"hsl(210,62%,50%)\"/><text x=\"" + number(x + 24) + "\" y=\"" +
              number(y + 10) + "\">running</text>\n<rect x=\"" + number(x + 90) + "\" y=\"" + number(y + 4.5) +
              "\" width=\"18\" height=\"3\" fill=\"hsl(210,62%,50%)\" fill-opacity=\"0.45\"/><text x=\"" +
              number(x + 114) + "\" y=\"" + number(y + 10) + "\">waiting</text>\n<rect x=\"" + number(x + 180) +
              "\" y=\"" + number(y + 5.5) + "\" width=\"18\" height=\"1\" fill=\"#bbb\"/><text x=\"" + number(x + 204) +
              "\" y=\"" + number(y + 10) + "\">task alive (created to completed); colour: one per task</text>\n";
  }

  const std::vector<svg_section>& m_sections;
  double m_span = 1;
  double m_scale = 1;
  std::string m_body;
};

} // namespace

void write_svg(const std::string& path, const std::vector<svg_section>& sections) {
  detail::write_file(path, svg_writer(sections).write());
}

void write_svg(const std::string& path) { write_svg(path, {svg_section{"simul trace", collect()}}); }

} // namespace simul::trace
