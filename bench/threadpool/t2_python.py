"""T2's Python side: N tiny tasks through concurrent.futures.ThreadPoolExecutor,
each returning a value through its future, submitted from one thread, then all
results taken. Prints the wall time in seconds on the last line.

    python3 bench/threadpool/t2_python.py [N] [WORKERS]
"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def task(i):
    return i


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with ThreadPoolExecutor(max_workers=workers) as ex:
        start = time.perf_counter()
        futures = [ex.submit(task, i) for i in range(n)]
        total = sum(f.result() for f in futures)
        elapsed = time.perf_counter() - start
    assert total == n * (n - 1) // 2
    print(f"{elapsed:.6f}")


if __name__ == "__main__":
    main()
