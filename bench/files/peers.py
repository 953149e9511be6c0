"""Python peers for bench/files (F1, F2, S1), run by simul_bench_files in the
same session, one workload per call:
    /usr/bin/python3 peers.py F1 <dir>
prints one line of JSON: {"seconds": <the workload's own time>, ...}.
Interpreter start is not timed.
"""

import asyncio
import json
import os
import resource
import sys
import time

MIB = 1024 * 1024
SIZE = 200 * MIB


def source_file(directory):
    path = os.path.join(directory, "f1-source.bin")
    if not os.path.exists(path) or os.path.getsize(path) != SIZE:
        with open(path, "wb") as f:
            f.write(b"s" * SIZE)
    return path


def f1(directory):
    """Copy a 200 MB file in 1 MiB chunks."""
    src = source_file(directory)
    dst = os.path.join(directory, "f1-python.bin")
    start = time.perf_counter()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while True:
            chunk = fin.read(MIB)
            if not chunk:
                break
            fout.write(chunk)
    seconds = time.perf_counter() - start
    os.remove(dst)
    return {"seconds": seconds}


def f2(directory):
    """Write 200 MB at once; report the peak resident size above the data."""
    data = b"w" * SIZE
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dst = os.path.join(directory, "f2-python.bin")
    start = time.perf_counter()
    with open(dst, "wb") as f:
        f.write(data)
    seconds = time.perf_counter() - start
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    os.remove(dst)
    return {"seconds": seconds, "peak_over_before_MiB": (hwm - before) / 1024.0 if hwm > before else 0.0}


async def s1_main(n):
    async def one():
        p = await asyncio.create_subprocess_exec("/bin/true", stdout=asyncio.subprocess.PIPE)
        await p.communicate()
        return p.returncode

    codes = await asyncio.gather(*(one() for _ in range(n)))
    assert all(c == 0 for c in codes)


def s1(_directory):
    """200 concurrent short children, each with a piped stdout."""
    start = time.perf_counter()
    asyncio.run(s1_main(200))
    return {"seconds": time.perf_counter() - start}


if __name__ == "__main__":
    workload, directory = sys.argv[1], sys.argv[2]
    print(json.dumps({"F1": f1, "F2": f2, "S1": s1}[workload](directory)), flush=True)
