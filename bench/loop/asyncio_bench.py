"""The Python peers of bench/loop/loop_bench.cpp (L1-L3), asyncio and uvloop.

    /usr/bin/python3 bench/loop/asyncio_bench.py [--runs 3] [--json FILE]

Prints the median time of each workload and the time per item, to set
against simul's per-item times from the C++ benchmark run in the same session;
--json writes the medians in bench/run's shape.
L1 runs 200,000 tasks (not 1,000,000: Python would take too long on the
shared machine); per-item times make the sizes comparable.
"""
import asyncio
import json
import statistics
import sys
import time

L1_TASKS = 200_000
L2_COROUTINES = 100
L2_YIELDS = 10_000
L3_SLEEPS = 100_000


async def trivial(i):
    return i & 1


async def l1():
    return sum(await asyncio.gather(*(trivial(i) for i in range(L1_TASKS))))


async def yielder():
    for _ in range(L2_YIELDS):
        await asyncio.sleep(0)


async def l2():
    await asyncio.gather(*(yielder() for _ in range(L2_COROUTINES)))


async def sleeper():
    await asyncio.sleep(0.001)


async def l3():
    await asyncio.gather(*(sleeper() for _ in range(L3_SLEEPS)))


RESULTS = {}


def measure(name, factory, items, runner, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(factory())
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"{name:28s} median {median * 1e3:10.1f} ms   {median / items * 1e9:10.1f} ns/item   ({runs} runs)")
    workload, side = name.split("/")
    RESULTS.setdefault(workload, {})[side] = {"seconds": median, "runs": runs, "counters": {"items": items}}


def main():
    runs = 3
    if "--runs" in sys.argv:
        runs = int(sys.argv[sys.argv.index("--runs") + 1])
    runners = [("asyncio", asyncio.run)]
    try:
        import uvloop

        runners.append(("uvloop", lambda coro: uvloop.run(coro) if hasattr(uvloop, "run") else _uv_run(uvloop, coro)))
    except ImportError:
        print("uvloop not installed: asyncio only")
    for label, runner in runners:
        measure(f"L1_create_gather/{label}", l1, L1_TASKS, runner, runs)
        measure(f"L2_yield/{label}", l2, L2_COROUTINES * L2_YIELDS, runner, runs)
        measure(f"L3_sleeps/{label}", l3, L3_SLEEPS, runner, runs)
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            json.dump(RESULTS, f, indent=1)


def _uv_run(uvloop, coro):
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


if __name__ == "__main__":
    main()
