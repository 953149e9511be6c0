// collect(): the rings' events turned into lanes.
//
// Loop tasks are known by their address, which a later task may reuse: a
// `create` event starts a new task for that address, and an `end` closes it.
// A task's wait runs from its `wait` event to its next run slice.

#include "ring.hpp"

#include <simul/trace.hpp>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>

namespace simul::detail {

std::vector<ring_copy> copy_rings() {
  std::vector<ring_copy> out;
  auto& reg = registry();
  const std::lock_guard lock(reg.mutex);
  for (const auto& ring : reg.rings) {
    ring_copy copy{ring.get(), {}, 0};
    const auto head = ring->head.load(std::memory_order_acquire);
    const auto base = ring->base.load(std::memory_order_acquire);
    auto first = head > ring->capacity ? head - ring->capacity : 0;
    if (first < base) {
      first = base;
    }
    copy.events.reserve(head - first);
    for (auto i = first; i < head; ++i) {
      const auto& slot = ring->slots[i % ring->capacity];
      const auto before = slot.seq.load(std::memory_order_acquire);
      trace_event e{};
      for (int w = 0; w < 7; ++w) {
        e.w[w] = slot.w[w].load(std::memory_order_acquire); // keeps the second look below after it
      }
      if (before != 2 * (i + 1) || slot.seq.load(std::memory_order_relaxed) != before) {
        ++copy.dropped; // overwritten while we read
        continue;
      }
      copy.events.push_back(e);
    }
    copy.dropped += first - base;
    out.push_back(std::move(copy));
  }
  return out;
}

std::vector<remote_lane_name> copy_remote_lanes() {
  auto& reg = registry();
  const std::lock_guard lock(reg.mutex);
  return reg.remote_lanes;
}

} // namespace simul::detail

namespace simul::trace {
namespace {

using detail::trace_event;
using detail::trace_kind;

const char* as_text(std::uint64_t w) { return reinterpret_cast<const char*>(static_cast<std::uintptr_t>(w)); }
std::int64_t as_time(std::uint64_t w) { return static_cast<std::int64_t>(w); }

// "simul::detail::sleep_waiter" -> "sleep_waiter"; plain text stays.
std::string wait_label(const char* label) {
  if (label == nullptr) {
    return "wait";
  }
  std::string out = detail::demangle(label);
  for (const std::string_view prefix : {"simul::detail::", "simul::"}) {
    if (out.starts_with(prefix)) {
      out.erase(0, prefix.size());
    }
  }
  return out;
}

// One event with where it came from, in time order across rings.
struct located {
  std::int64_t time;
  std::size_t ring;
  std::size_t order; // its place in the ring, to keep a ring's order on ties
  trace_event event;
};

class builder {
 public:
  builder(std::vector<detail::ring_copy> rings, std::vector<detail::remote_lane_name> remote_lanes)
      : m_rings(std::move(rings)), m_remote_lanes(std::move(remote_lanes)) {}

  timeline build() {
    for (std::size_t r = 0; r < m_rings.size(); ++r) {
      const auto* ring = m_rings[r].ring;
      m_out.lanes.push_back(lane{ring->pid, ring->tid, 0, ring->thread_name, {}, {}});
    }
    for (const auto& e : sorted_events()) {
      apply(e);
    }
    close_open_waits();
    mark_dropped();
    append_named_lanes();
    finish();
    return std::move(m_out);
  }

 private:
  struct task_state {
    std::size_t lane; // in m_tasks
    const void* key;
    std::int64_t wait_since = -1;
    std::string wait_label;
  };

  std::vector<located> sorted_events() const {
    std::vector<located> all;
    for (std::size_t r = 0; r < m_rings.size(); ++r) {
      const auto& events = m_rings[r].events;
      for (std::size_t i = 0; i < events.size(); ++i) {
        all.push_back({event_time(events[i]), r, i, events[i]});
      }
    }
    std::stable_sort(all.begin(), all.end(), [](const located& a, const located& b) {
      if (a.time != b.time) {
        return a.time < b.time;
      }
      return a.ring != b.ring ? a.ring < b.ring : a.order < b.order;
    });
    // A name slot follows its create/end slot in the same ring, at the same time.
    return all;
  }

  static std::int64_t event_time(const trace_event& e) {
    switch (e.kind()) {
    case trace_kind::run:
    case trace_kind::create:
    case trace_kind::rename:
    case trace_kind::end:
    case trace_kind::wait:
    case trace_kind::remote:
      return as_time(e.w[3]);
    case trace_kind::span_run:
    case trace_kind::span_wait:
      return as_time(e.w[1]);
    case trace_kind::name:
      return -1; // placed by its ring order (see apply)
    }
    return 0;
  }

  void apply(const located& l) {
    const auto& e = l.event;
    const void* key = reinterpret_cast<const void*>(static_cast<std::uintptr_t>(e.w[1]));
    switch (e.kind()) {
    case trace_kind::create: {
      auto& t = new_task(key, e.w[2]);
      set_where(t, e);
      task_lane(t).slices.push_back({slice::kind::task, as_time(e.w[3]), as_time(e.w[3]), task_lane(t).task, {}});
      name_next(l, t);
      break;
    }
    case trace_kind::end: {
      auto& t = task_of(key, e.w[2]);
      end_wait(t, as_time(e.w[3]));
      close_lifetime(t, as_time(e.w[3]));
      name_next(l, t);
      m_live.erase(key);
      break;
    }
    case trace_kind::rename: {
      auto& t = task_of(key, 0);
      set_where(t, e);
      name_next(l, t);
      break;
    }
    case trace_kind::run:
      add_run(l.ring, key, e);
      break;
    case trace_kind::wait: {
      auto& t = task_of(key, 0);
      t.wait_since = as_time(e.w[3]);
      t.wait_label = wait_label(as_text(e.w[5]));
      break;
    }
    case trace_kind::remote:
      add_remote(e);
      break;
    case trace_kind::span_run:
    case trace_kind::span_wait:
      add_span(l.ring, e);
      break;
    case trace_kind::name:
      break;
    }
  }

  // The name slot written right after a create/end slot.
  void name_next(const located& l, task_state& t) {
    const auto& events = m_rings[l.ring].events;
    if (l.order + 1 < events.size() && events[l.order + 1].kind() == trace_kind::name) {
      auto name = detail::unpack_text(&events[l.order + 1].w[2], 5);
      if (!name.empty()) {
        task_lane(t).name = std::move(name);
      }
    }
  }

  void set_where(task_state& t, const trace_event& e) {
    if (const char* file = as_text(e.w[5]); file != nullptr && *file != '\0') {
      task_lane(t).where = std::string(file) + ":" + std::to_string(e.high());
    }
  }

  task_state& new_task(const void* key, std::uint64_t serial) {
    m_tasks.push_back(lane{m_out.lanes.front().pid, 0, m_tasks.size() + 1, "Task-" + std::to_string(serial), {}, {}});
    auto& t = m_live[key];
    t = task_state{m_tasks.size() - 1, key, -1, {}};
    return t;
  }

  task_state& task_of(const void* key, std::uint64_t serial) {
    auto it = m_live.find(key);
    return it != m_live.end() ? it->second : new_task(key, serial);
  }

  lane& task_lane(const task_state& t) { return m_tasks[t.lane]; }

  void end_wait(task_state& t, std::int64_t now) {
    if (t.wait_since >= 0) {
      task_lane(t).slices.push_back({slice::kind::wait, t.wait_since, now, task_lane(t).task, t.wait_label});
      t.wait_since = -1;
    }
  }

  // Its life ends at `now` or with its last step, if later (a task completes inside its step).
  void close_lifetime(task_state& t, std::int64_t now) {
    for (const auto& s : task_lane(t).slices) {
      now = std::max(now, s.end);
    }
    for (auto& s : task_lane(t).slices) {
      if (s.what == slice::kind::task) {
        s.end = now;
        s.name = task_lane(t).name;
      }
    }
  }

  void add_run(std::size_t ring, const void* key, const trace_event& e) {
    const auto t0 = as_time(e.w[3]);
    const auto t1 = as_time(e.w[4]);
    if (key == nullptr) {
      const char* label = as_text(e.w[5]);
      m_out.lanes[ring].slices.push_back({slice::kind::run, t0, t1, ++m_anonymous, label != nullptr ? label : "task"});
      return;
    }
    auto& t = task_of(key, e.w[2]);
    end_wait(t, t0);
    auto& tl = task_lane(t);
    tl.slices.push_back({slice::kind::run, t0, t1, tl.task, {}});
    m_out.lanes[ring].slices.push_back({slice::kind::run, t0, t1, tl.task, {}});
    m_last_seen = std::max(m_last_seen, t1);
  }

  // A slice measured in another process: on the lane of its pid, or on a
  // named remote lane (an MPI rank).
  void add_remote(const trace_event& e) {
    const auto lane_number = e.w[1];
    if (lane_number > m_remote_lanes.size()) {
      return; // registered after the lanes were copied: not this collection's
    }
    // Pids and lane numbers key one map: lanes as negative keys.
    const std::int64_t key =
        lane_number != 0 ? -static_cast<std::int64_t>(lane_number) : static_cast<std::int64_t>(e.high());
    auto it = m_processes.find(key);
    if (it == m_processes.end()) {
      it = m_processes.emplace(key, m_extra.size()).first;
      if (lane_number != 0) {
        const auto& named = m_remote_lanes[lane_number - 1];
        m_extra.push_back(lane{named.pid, 0, 0, named.name, {}, {}});
      } else {
        const int pid = static_cast<int>(e.high());
        m_extra.push_back(lane{pid, 0, 0, "worker process " + std::to_string(pid), {}, {}});
      }
    }
    const char* label = as_text(e.w[5]);
    m_extra[it->second].slices.push_back(
        {slice::kind::run, as_time(e.w[3]), as_time(e.w[4]), ++m_anonymous, label != nullptr ? label : "task"});
  }

  // A span of user code: on its thread's lane, and on the lane of its name.
  void add_span(std::size_t ring, const trace_event& e) {
    auto name = detail::unpack_text(&e.w[3], 4);
    auto it = m_named.find(name);
    if (it == m_named.end()) {
      it = m_named.emplace(name, m_named_lanes.size()).first;
      m_named_lanes.push_back(lane{m_rings[ring].ring->pid, 0, 0, name, {}, {}});
    }
    const bool waiting = e.kind() == trace_kind::span_wait;
    const auto kind = waiting ? slice::kind::wait : slice::kind::run;
    const auto id = 1'000'000 + it->second; // spans of one name share a colour
    m_named_lanes[it->second].slices.push_back({kind, as_time(e.w[1]), as_time(e.w[2]), id, waiting ? "wait" : name});
    if (!waiting) {
      m_out.lanes[ring].slices.push_back({kind, as_time(e.w[1]), as_time(e.w[2]), id, name});
    }
  }

  // A task still waiting when the trace ends waits until the end.
  void close_open_waits() {
    for (auto& [key, t] : m_live) {
      std::int64_t last = m_last_seen;
      for (const auto& s : task_lane(t).slices) {
        last = std::max(last, s.end);
      }
      end_wait(t, last);
      close_lifetime(t, last);
    }
  }

  void mark_dropped() {
    for (std::size_t r = 0; r < m_rings.size(); ++r) {
      if (m_rings[r].dropped == 0) {
        continue;
      }
      std::int64_t at = 0;
      for (const auto& e : m_rings[r].events) {
        if (const auto t = event_time(e); t > 0) {
          at = t;
          break;
        }
      }
      m_out.lanes[r].slices.push_back(
          {slice::kind::dropped, at, at, 0, "dropped " + std::to_string(m_rings[r].dropped) + " events"});
    }
  }

  void append_named_lanes() {
    for (auto* group : {&m_extra, &m_named_lanes, &m_tasks}) {
      for (auto& l : *group) {
        m_out.lanes.push_back(std::move(l));
      }
    }
  }

  void finish() {
    bool any = false;
    for (auto& l : m_out.lanes) {
      std::stable_sort(l.slices.begin(), l.slices.end(),
                       [](const slice& a, const slice& b) { return a.begin < b.begin; });
      for (const auto& s : l.slices) {
        m_out.begin = any ? std::min(m_out.begin, s.begin) : s.begin;
        m_out.end = any ? std::max(m_out.end, s.end) : s.end;
        any = true;
      }
    }
    // Lanes of threads that recorded nothing since the last clear are left out.
    std::erase_if(m_out.lanes, [](const lane& l) { return l.slices.empty(); });
  }

  std::vector<detail::ring_copy> m_rings;
  timeline m_out;
  std::vector<lane> m_tasks;
  std::vector<lane> m_extra;
  std::vector<lane> m_named_lanes;
  std::map<const void*, task_state> m_live;
  std::vector<detail::remote_lane_name> m_remote_lanes;
  std::map<std::int64_t, std::size_t> m_processes;
  std::map<std::string, std::size_t> m_named;
  std::uint64_t m_anonymous = std::uint64_t{1} << 40; // numbers of their own, past any task lane's
  std::int64_t m_last_seen = 0;
};

} // namespace

timeline collect() { return builder(detail::copy_rings(), detail::copy_remote_lanes()).build(); }

} // namespace simul::trace
