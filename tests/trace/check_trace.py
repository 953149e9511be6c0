"""Checks a file written by simul::trace.

    check_trace.py json FILE [NAME...]   the trace-event format; each NAME is an event name
    check_trace.py svg FILE [TEXT...]    well-formed XML with an <svg> root; each TEXT is drawn
A NAME or TEXT of the form @PATH is a file holding a JSON list of them.
Exit status 0 if it holds, 1 with a message if not.
"""
import json
import sys
import xml.etree.ElementTree as ET


def fail(message):
    print("check_trace:", message)
    sys.exit(1)


def check_json(path, names):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    events = doc.get("traceEvents")
    if not isinstance(events, list) or not events:
        fail("no traceEvents list")
    seen = set()
    for e in events:
        for key in ("ph", "pid", "tid", "name"):
            if key not in e:
                fail("event without %r: %r" % (key, e))
        if e["ph"] not in ("X", "M", "i"):
            fail("unexpected ph %r" % e["ph"])
        if e["ph"] == "X":
            if not isinstance(e.get("ts"), (int, float)) or not isinstance(e.get("dur"), (int, float)):
                fail("X event without numeric ts/dur: %r" % e)
            if e["dur"] < 0 or e["ts"] < 0:
                fail("negative time: %r" % e)
        if e["ph"] == "M":
            if e["name"] not in ("process_name", "thread_name", "thread_sort_index"):
                fail("unexpected metadata %r" % e["name"])
            if e["name"] != "thread_sort_index":
                seen.add(e["args"]["name"])
        seen.add(e["name"])
    for name in names:
        if name not in seen:
            fail("no event or lane named %r" % name)


def check_svg(path, texts):
    root = ET.parse(path).getroot()
    if root.tag != "{http://www.w3.org/2000/svg}svg":
        fail("root is %r" % root.tag)
    drawn = "\n".join(root.itertext())
    for text in texts:
        if text not in drawn:
            fail("%r is not drawn" % text)


if __name__ == "__main__":
    mode, path, rest = sys.argv[1], sys.argv[2], []
    for arg in sys.argv[3:]:
        if arg.startswith("@"):
            with open(arg[1:], encoding="utf-8") as f:
                rest.extend(json.load(f))
        else:
            rest.append(arg)
    {"json": check_json, "svg": check_svg}[mode](path, rest)
