"""The Python side of simul-compare: the same two workloads with asyncio,
concurrent.futures' ThreadPoolExecutor and ProcessPoolExecutor (fork).

Run by simul-compare --python, once per round; prints one JSON object per
line on stdout. --warm-up first runs every mode once at a tiny size, untimed,
so that the first timed run does not pay for waking the machine.
"""
import argparse
import asyncio
import concurrent.futures as cf
import json
import multiprocessing
import time


def count_primes(first, last):
    count = 0
    for n in range(max(first, 2), last):
        d = 2
        prime = True
        while d * d <= n:
            if n % d == 0:
                prime = False
                break
            d += 1
        count += prime
    return count


def blocking_wait(milliseconds):
    time.sleep(milliseconds / 1000)
    return milliseconds


def cpu_busy_ticks():
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def measure_and_print(workload, mode, setup, run):
    busy0, total0 = cpu_busy_ticks()
    start = time.perf_counter()
    check = run()
    wall = time.perf_counter() - start
    busy1, total1 = cpu_busy_ticks()
    busy = (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
    print(json.dumps({"workload": workload, "mode": mode, "setup": setup, "wall_seconds": wall,
                      "cpu_busy": busy, "check": check}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    for name in ("cpu-tasks", "cpu-span", "cpu-base", "io-tasks", "io-ms", "workers", "io-threads"):
        parser.add_argument("--" + name, type=int, required=True)
    parser.add_argument("--warm-up", action="store_true")
    parser.add_argument("--mpi4py", action="store_true",
                        help="only the MPI row: run as mpirun -n N python3 -m mpi4py.futures compare.py ...")
    a = parser.parse_args()
    if a.warm_up:
        run_modes(argparse.Namespace(cpu_tasks=2, cpu_span=2000, cpu_base=a.cpu_base, io_tasks=4, io_ms=1,
                                     workers=a.workers, io_threads=a.io_threads, mpi4py=a.mpi4py), report=False)
    run_modes(a, report=True)


def run_modes(a, report):
    def measure(workload, mode, setup, run):
        if report:
            measure_and_print(workload, mode, setup, run)
        else:
            run()

    ranges = [(a.cpu_base + i * a.cpu_span, a.cpu_base + (i + 1) * a.cpu_span) for i in range(a.cpu_tasks)]
    waits = [a.io_ms] * a.io_tasks
    fork = multiprocessing.get_context("fork")

    def on_executor(executor, fn, items):
        with executor:
            return sum(f.result() for f in [executor.submit(fn, *item) for item in items])

    async def on_loop(fn_async, items):
        return sum(await asyncio.gather(*(fn_async(*item) for item in items)))

    async def loop_with_pool(executor, fn, items):
        loop = asyncio.get_running_loop()
        with executor:
            return sum(await asyncio.gather(*(loop.run_in_executor(executor, fn, *item) for item in items)))

    async def cpu_coroutine(first, last):
        return count_primes(first, last)

    async def io_coroutine(milliseconds):
        await asyncio.sleep(milliseconds / 1000)
        return milliseconds

    w, t = a.workers, a.io_threads
    if a.mpi4py:
        from mpi4py.futures import MPIPoolExecutor  # the other ranks of this job serve it
        from mpi4py import MPI
        ranks = MPI.COMM_WORLD.Get_size() - 1
        measure("cpu", "MPI pool", f"mpi4py, {ranks} worker ranks",
                lambda: on_executor(MPIPoolExecutor(), count_primes, ranges))
        return
    measure("cpu", "sequential", "one thread", lambda: sum(count_primes(*r) for r in ranges))
    measure("cpu", "thread pool", f"{w} threads", lambda: on_executor(cf.ThreadPoolExecutor(w), count_primes, ranges))
    measure("cpu", "process pool", f"{w} processes",
            lambda: on_executor(cf.ProcessPoolExecutor(w, mp_context=fork), count_primes, ranges))
    measure("cpu", "event loop", "asyncio", lambda: asyncio.run(on_loop(cpu_coroutine, ranges)))
    measure("cpu", "loop + pool", f"asyncio + {w} processes",
            lambda: asyncio.run(loop_with_pool(cf.ProcessPoolExecutor(w, mp_context=fork), count_primes, ranges)))
    items = [(ms,) for ms in waits]
    measure("io", "sequential", "one thread", lambda: sum(blocking_wait(ms) for ms in waits))
    measure("io", "thread pool", f"{t} threads", lambda: on_executor(cf.ThreadPoolExecutor(t), blocking_wait, items))
    measure("io", "process pool", f"{w} processes",
            lambda: on_executor(cf.ProcessPoolExecutor(w, mp_context=fork), blocking_wait, items))
    measure("io", "event loop", "asyncio", lambda: asyncio.run(on_loop(io_coroutine, items)))
    measure("io", "loop + pool", f"asyncio + {t} threads",
            lambda: asyncio.run(loop_with_pool(cf.ThreadPoolExecutor(t), blocking_wait, items)))


if __name__ == "__main__":
    main()
