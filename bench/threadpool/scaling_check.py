"""Is a row of the thread-pool scaling table slower than 1 worker beyond noise?

Runs the scaling rows of simul_bench_threadpool with random interleaving (the
rows' repetitions in a shuffled order, so that a VM drifting slower spreads
over every row) and compares each row's repetitions with those of 1 worker
and the same number of submitters:

- the ratio of the medians (above 1: slower than 1 worker);
- p, the chance that a row no different from 1 worker would look at least
  this much slower: a one-sided permutation test of the Mann-Whitney U
  statistic (the share of random relabellings of the repetitions whose U is
  at least the measured one).

The 1-worker rows run twice, under two names (scaling_post_400k_same), and
the two are first compared with each other (two-sided). If even they differ
beyond noise (p < ALPHA), the VM's noise was not spread evenly over the rows
in that run and its column is reported as inconclusive. Otherwise both serve
as the 1-worker sample, and a row counts as slower beyond noise when its
p < ALPHA.

    python3 bench/threadpool/scaling_check.py BENCH [--repetitions N] [--out FILE.json]
    python3 bench/threadpool/scaling_check.py --from FILE.json

BENCH is build/release/bench/threadpool/simul_bench_threadpool; --out keeps
the benchmark's JSON report, --from reads one again instead of running.

(The U test is written out here rather than taken from SciPy: Debian 12's
python3-scipy depends on Boost 1.74's headers, which conflict with the Boost
1.81 the benchmarks build against.)
"""
import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile

ALPHA = 0.05
PERMUTATIONS = 20_000
NAME = re.compile(r"^(scaling_post_400k(?:_same)?)/workers:(\d+)/submitters:(\d+)/real_time$")


def run(bench, repetitions, out):
    """Runs the scaling rows, writing the JSON report to `out`."""
    subprocess.run(
        [bench, "--benchmark_filter=^scaling_post_400k(_same)?/",
         "--benchmark_enable_random_interleaving=true",
         f"--benchmark_repetitions={repetitions}",
         f"--benchmark_out={out}", "--benchmark_out_format=json"],
        check=True, stdout=subprocess.DEVNULL)


def load(path):
    """Per-repetition times in ms, keyed by (row name, workers, submitters)."""
    with open(path) as f:
        report = json.load(f)
    times = {}
    for entry in report["benchmarks"]:
        match = NAME.match(entry["name"])
        if entry.get("run_type") != "iteration" or not match:
            continue
        assert entry["time_unit"] == "ms", entry["time_unit"]
        key = (match[1], int(match[2]), int(match[3]))
        times.setdefault(key, []).append(entry["real_time"])
    return times


def midranks(values):
    """Ranks from 1, ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def p_slower(row, base, rng):
    """One-sided permutation p of U (pairs in which the row took longer)."""
    # U is the row's rank sum less a constant, so the rank sum serves as well.
    ranks = midranks(row + base)
    measured = sum(ranks[:len(row)])
    at_least = 0
    for _ in range(PERMUTATIONS):
        rng.shuffle(ranks)
        if sum(ranks[:len(row)]) >= measured - 1e-9:
            at_least += 1
    return (at_least + 1) / (PERMUTATIONS + 1)


def report(times):
    wanted = [(name, 1, s) for name in ("scaling_post_400k", "scaling_post_400k_same") for s in (1, 2)]
    wanted += [("scaling_post_400k", w, s) for w in range(2, 5) for s in (1, 2)]
    missing = [f"{name}/workers:{w}/submitters:{s}" for name, w, s in wanted if len(times.get((name, w, s), [])) < 2]
    if missing:
        sys.exit("scaling_check.py: the report lacks repetitions of " + ", ".join(missing))
    rng = random.Random(1)
    print("p: the chance of looking at least this much slower by noise alone")
    print(f"{'row':<36} {'reps':>4} {'median ms':>9} {'vs 1 worker':>11} {'p':>7}  verdict")
    for submitters in (1, 2):
        first = times[("scaling_post_400k", 1, submitters)]
        again = times[("scaling_post_400k_same", 1, submitters)]
        p_same = min(1.0, 2 * min(p_slower(first, again, rng), p_slower(again, first, rng)))
        ratio = statistics.median(again) / statistics.median(first)
        print(f"{f'1 worker, {submitters} submitter(s)':<36} {len(first):4} {statistics.median(first):9.1f}")
        print(f"  {'1 worker again (two-sided)':<34} {len(again):4} {statistics.median(again):9.1f}"
              f" {ratio:10.3f}x {p_same:7.4f}  {'differ: inconclusive' if p_same < ALPHA else 'alike'}")
        base = first + again
        for workers in range(2, 5):
            row = times[("scaling_post_400k", workers, submitters)]
            ratio = statistics.median(row) / statistics.median(base)
            p = p_slower(row, base, rng)
            if p_same < ALPHA:
                verdict = "inconclusive"
            else:
                verdict = "slower beyond noise" if p < ALPHA else "not slower beyond noise"
            print(f"  {f'{workers} workers (vs both 1-worker rows)':<34} {len(row):4} {statistics.median(row):9.1f}"
                  f" {ratio:10.3f}x {p:7.4f}  {verdict}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", nargs="?", help="path to simul_bench_threadpool")
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--out", help="keep the benchmark's JSON report here")
    parser.add_argument("--from", dest="source", help="analyse this JSON report instead of running")
    args = parser.parse_args()
    if args.source:
        report(load(args.source))
        return
    if not args.bench:
        parser.error("give the benchmark's path, or --from FILE.json")
    if not os.access(args.bench, os.X_OK):
        parser.error(f"{args.bench} is not an executable (build the release preset first)")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or os.path.join(tmp, "scaling.json")
        run(args.bench, args.repetitions, out)
        report(load(out))


if __name__ == "__main__":
    main()
