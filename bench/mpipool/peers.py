"""The mpi4py.futures side of bench/mpipool (M1-M4), on the same work.

Run by simul_bench_mpipool as its own MPI job:
    mpirun -n 3 /usr/bin/python3 -m mpi4py.futures peers.py M1
Ranks 1.. serve MPIPoolExecutor; rank 0 runs this file's main and prints one
JSON line: the workload's own time in seconds (pool start excluded) and, for
M2, the round trip's median and p99 in microseconds.
"""
import json
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def tiny(x):
    return x + 1


def spin(n):
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i) & 0xFFFFFFFF
    return acc


def echo(data):
    return data


def spin_for_5ms():
    n = 1000
    while True:
        start = time.perf_counter()
        spin(n)
        dt = time.perf_counter() - start
        if dt > 0.02:
            return int(n * 0.005 / dt)
        n *= 2


def main():
    workload = sys.argv[1]
    result = {"workload": workload}
    with MPIPoolExecutor() as pool:
        for i in range(8):  # warm: every worker rank up
            pool.submit(tiny, i).result()
        if workload == "M1":
            start = time.perf_counter()
            futures = [pool.submit(tiny, i) for i in range(20000)]
            total = sum(f.result() for f in futures)
            result["seconds"] = time.perf_counter() - start
            result["check"] = total
        elif workload == "M2":
            latencies = []
            for _ in range(2000):
                start = time.perf_counter()
                pool.submit(tiny, 1).result()
                latencies.append(time.perf_counter() - start)
            latencies.sort()
            result["seconds"] = latencies[len(latencies) // 2]
            result["p50_us"] = latencies[len(latencies) // 2] * 1e6
            result["p99_us"] = latencies[len(latencies) * 99 // 100] * 1e6
        elif workload == "M3":
            n = spin_for_5ms()  # Python's own 5 ms: the same task length, not the same loop count
            times = []
            for _ in range(5):  # the median of five runs, as on simul's side
                start = time.perf_counter()
                futures = [pool.submit(spin, n) for _ in range(64)]
                for f in futures:
                    f.result()
                times.append(time.perf_counter() - start)
            times.sort()
            result["seconds"] = times[2]
        elif workload == "M4":
            data = bytes(64 << 20)
            for _ in range(2):  # untimed, as on simul's side
                pool.submit(echo, data).result()
            times = []
            for _ in range(7):
                start = time.perf_counter()
                back = pool.submit(echo, data).result()
                times.append(time.perf_counter() - start)
                assert len(back) == len(data)
            times.sort()
            result["seconds"] = times[3]
        else:
            raise SystemExit("unknown workload " + workload)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
