"""Python peers for bench/procpool (BENCHMARKS.md P1-P6).

Run by simul_bench_procpool in the same session, one workload per call:
    python3 peers.py P1
prints one line of JSON: {"seconds": <time the benchmark compares>, ...counters}.
Only the workload itself is timed; interpreter start and pool start are not.
"""

import json
import multiprocessing as mp
import os
import random
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

WORKERS = 2
CTX = mp.get_context("fork")


def tiny(x):
    return x + 1


def spin(n):
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i) & 0xFFFFFFFF
    return acc


def warm(ex):
    for f in [ex.submit(tiny, i) for i in range(WORKERS * 4)]:
        f.result()


def p1():
    with ProcessPoolExecutor(WORKERS, mp_context=CTX) as ex:
        warm(ex)
        t = time.perf_counter()
        fs = [ex.submit(tiny, i) for i in range(20000)]
        total = sum(f.result() for f in fs)
        dt = time.perf_counter() - t
    assert total == sum(range(1, 20001))
    return {"seconds": dt}


def p2():
    with ProcessPoolExecutor(WORKERS, mp_context=CTX) as ex:
        warm(ex)
        lat = []
        for i in range(2000):
            t = time.perf_counter()
            ex.submit(tiny, i).result()
            lat.append(time.perf_counter() - t)
    lat.sort()
    return {"seconds": lat[len(lat) // 2], "p50_us": lat[len(lat) // 2] * 1e6, "p99_us": lat[len(lat) * 99 // 100] * 1e6}


def p3():
    with CTX.Pool(WORKERS) as pool:
        pool.map(tiny, range(1000), chunksize=100)
        t = time.perf_counter()
        out = pool.map(tiny, range(1_000_000), chunksize=1000)
        dt = time.perf_counter() - t
    assert out[-1] == 1_000_000
    return {"seconds": dt}


def calibrate_5ms():
    n = 20000
    while True:
        t = time.perf_counter()
        spin(n)
        dt = time.perf_counter() - t
        if dt > 0.002:
            return int(n * 0.005 / dt)
        n *= 2


def p4():
    n = calibrate_5ms()
    t = time.perf_counter()
    for _ in range(64):
        spin(n)
    seq = time.perf_counter() - t
    with ProcessPoolExecutor(WORKERS, mp_context=CTX) as ex:
        warm(ex)
        t = time.perf_counter()
        for f in [ex.submit(spin, n) for _ in range(64)]:
            f.result()
        dt = time.perf_counter() - t
    return {"seconds": dt, "speedup": seq / dt}


def p6():
    """10,000 tasks while workers are SIGKILLed at random: how many complete?"""
    done = 0
    broken = 0
    t = time.perf_counter()
    ex = ProcessPoolExecutor(WORKERS, mp_context=CTX)
    warm(ex)
    stop = threading.Event()

    def killer():
        rng = random.Random(7)
        while not stop.wait(0.02):
            pids = list(getattr(ex, "_processes", {}) or {})
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    th = threading.Thread(target=killer)
    th.start()
    fs = []
    try:
        for i in range(10000):
            fs.append(ex.submit(spin, 200))
    except BrokenProcessPool:
        pass
    # ProcessPoolExecutor can hang when a worker is killed: bound the wait and
    # count what never finished as lost.
    finished, _ = wait(fs, timeout=20)
    for f in finished:
        try:
            f.result()
            done += 1
        except Exception:
            broken += 1
    stop.set()
    th.join()
    serving = 1
    try:
        ex.submit(tiny, 1).result(timeout=5)
    except Exception:
        serving = 0
    for p in list(getattr(ex, "_processes", {}) or {}):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return {"seconds": time.perf_counter() - t, "completed": done, "lost": 10000 - done, "still_serving": serving}


if __name__ == "__main__":
    which = sys.argv[1]
    result = {"P1": p1, "P2": p2, "P3": p3, "P4": p4, "P6": p6}[which]()
    print(json.dumps(result), flush=True)
    os._exit(0)  # a broken executor can block interpreter exit forever
