// write_json: the timeline as Chrome trace-event JSON ("X" complete events,
// "M" metadata naming processes and lanes, "i" for dropped-event marks).
// Times are microseconds from the timeline's first event.

#include "text.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

namespace simul::detail {

namespace {

// The length of a valid UTF-8 sequence starting at text[i], or 0.
std::size_t utf8_length(std::string_view text, std::size_t i) {
  const auto c = static_cast<unsigned char>(text[i]);
  std::size_t n = 0;
  if (c < 0x80) {
    return 1;
  }
  if ((c & 0xE0) == 0xC0 && c >= 0xC2) {
    n = 2;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
  } else if ((c & 0xF8) == 0xF0 && c <= 0xF4) {
    n = 4;
  } else {
    return 0;
  }
  if (i + n > text.size()) {
    return 0;
  }
  for (std::size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) {
      return 0;
    }
  }
  return n;
}

} // namespace

void append_json_string(std::string& out, std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else if (const auto n = utf8_length(text, i); n > 1) {
      out.append(text.substr(i, n));
      i += n;
      continue;
    } else if (n == 0) {
      out += "\\ufffd";
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
}

void append_xml_text(std::string& out, std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
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
    case '"':
      out += "&quot;";
      break;
    case '\'':
      out += "&apos;";
      break;
    default:
      if (c < 0x20 && c != '\t' && c != '\n') {
        out += ' '; // not allowed in XML 1.0 at all
      } else if (const auto n = utf8_length(text, i); n > 1) {
        out.append(text.substr(i, n));
        i += n;
        continue;
      } else if (n == 0) {
        out += "\xEF\xBF\xBD";
      } else {
        out += static_cast<char>(c);
      }
    }
    ++i;
  }
}

void write_file(const std::string& path, const std::string& content) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    throw trace_error("simul::trace: cannot open " + path + " for writing: " + std::strerror(errno));
  }
  const bool written = std::fwrite(content.data(), 1, content.size(), f) == content.size();
  const int saved = errno;
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) {
    throw trace_error("simul::trace: cannot write " + path + ": " + std::strerror(written ? errno : saved));
  }
}

std::string micros(std::int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(ns / 1000),
                static_cast<long long>((ns < 0 ? -ns : ns) % 1000));
  return buf;
}

} // namespace simul::detail

namespace simul::trace {
namespace {

using detail::append_json_string;
using detail::micros;

class json_writer {
 public:
  explicit json_writer(const timeline& t) : m_t(t) {
    for (const auto& l : t.lanes) {
      if (l.task != 0) {
        m_task_names[l.task] = &l;
      }
    }
  }

  std::string write() {
    m_out =
        "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"clock\":\"steady\",\"origin_ns\":" + std::to_string(m_t.begin) +
        "},\"traceEvents\":[";
    std::set<int> pids;
    for (std::size_t i = 0; i < m_t.lanes.size(); ++i) {
      const auto& l = m_t.lanes[i];
      if (pids.insert(l.pid).second) {
        metadata(l.pid, l.pid, "process_name", l.tid == 0 && l.task == 0 ? l.name : "process " + std::to_string(l.pid));
      }
      const int tid = lane_tid(l, i);
      metadata(l.pid, tid, "thread_name", l.task != 0 ? "task: " + l.name : l.name);
      sort_index(l.pid, tid, i);
      for (const auto& s : l.slices) {
        event(l, tid, s);
      }
    }
    m_out += "]}\n";
    return std::move(m_out);
  }

 private:
  // Threads keep their id; the other lanes get ids no thread has.
  static int lane_tid(const lane& l, std::size_t index) {
    if (l.tid != 0) {
      return l.tid;
    }
    return l.task == 0 && l.name.starts_with("worker process ") ? l.pid : 1'000'000'000 + static_cast<int>(index);
  }

  void begin_event(const char* ph, int pid, int tid) {
    if (!m_first) {
      m_out += ",\n";
    }
    m_first = false;
    m_out += "{\"ph\":\"";
    m_out += ph;
    m_out += "\",\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(tid);
  }

  void field(const char* key, std::string_view text) {
    m_out += ",\"";
    m_out += key;
    m_out += "\":\"";
    append_json_string(m_out, text);
    m_out += '"';
  }

  void metadata(int pid, int tid, const char* what, const std::string& name) {
    begin_event("M", pid, tid);
    field("name", what);
    m_out += ",\"args\":{";
    m_out += "\"name\":\"";
    append_json_string(m_out, name);
    m_out += "\"}}";
  }

  void sort_index(int pid, int tid, std::size_t index) {
    begin_event("M", pid, tid);
    field("name", "thread_sort_index");
    m_out += ",\"args\":{\"sort_index\":" + std::to_string(index) + "}}";
  }

  std::string slice_name(const slice& s) const {
    if (s.what == slice::kind::wait) {
      return "wait: " + s.name;
    }
    if (!s.name.empty()) {
      return s.name;
    }
    const auto it = m_task_names.find(s.task);
    return it != m_task_names.end() ? it->second->name : "task";
  }

  void event(const lane& l, int tid, const slice& s) {
    if (s.what == slice::kind::dropped) {
      begin_event("i", l.pid, tid);
      field("name", s.name);
      m_out += ",\"s\":\"t\",\"ts\":" + micros(s.begin - m_t.begin) + "}";
      return;
    }
    begin_event("X", l.pid, tid);
    field("name", slice_name(s));
    field("cat", s.what == slice::kind::run ? "run" : s.what == slice::kind::wait ? "wait" : "task");
    m_out +=
        ",\"ts\":" + micros(s.begin - m_t.begin) + ",\"dur\":" + micros(std::max<std::int64_t>(0, s.end - s.begin));
    m_out += ",\"args\":{\"task\":" + std::to_string(s.task);
    const auto it = m_task_names.find(s.task);
    if (it != m_task_names.end() && !it->second->where.empty()) {
      field("where", it->second->where);
    }
    m_out += "}}";
  }

  const timeline& m_t;
  std::map<std::uint64_t, const lane*> m_task_names;
  std::string m_out;
  bool m_first = true;
};

} // namespace

void write_json(const std::string& path, const timeline& what) { detail::write_file(path, json_writer(what).write()); }

void write_json(const std::string& path) { write_json(path, collect()); }

} // namespace simul::trace
