"""Checks that every C++ snippet in a Markdown file is taken from the example it names.

A snippet is a ```cpp block preceded by a line

    <!-- from examples/<path> -->

and every non-blank line of it (leading and trailing spaces aside) must be a
line of that file, or "..." marking an omission.

    python3 check_snippets.py README.md <source root>
    python3 check_snippets.py docs/guide.md <source root>
"""

import pathlib
import re
import sys


def main(doc_path: str, root: str) -> int:
    doc = pathlib.Path(doc_path).read_text().splitlines()
    failures = []
    checked = 0
    source = None
    source_lines = set()
    in_block = False
    for number, line in enumerate(doc, start=1):
        marker = re.fullmatch(r"<!-- from (\S+) -->", line)
        if marker:
            path = pathlib.Path(root) / marker.group(1)
            if not path.is_file():
                failures.append(f"line {number}: names {marker.group(1)}, which does not exist")
                source = None
                continue
            source = marker.group(1)
            source_lines = {s.strip() for s in path.read_text().splitlines()}
        elif line.strip() == "```cpp" and source:
            in_block = True
            checked += 1
        elif line.strip() == "```" and in_block:
            in_block = False
            source = None
        elif in_block:
            text = line.strip()
            if text and text != "..." and text not in source_lines:
                failures.append(f"line {number}: not in {source}: {text}")
    if checked == 0:
        failures.append("no snippet names the example it is taken from")
    for failure in failures:
        print(f"{doc_path}: {failure}")
    if not failures:
        print(f"{doc_path}: {checked} snippets match their examples")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
