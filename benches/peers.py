"""CPython's own executors on the workloads of benches/peers.rs, run by `cargo bench --bench peers`.

Prints one line per figure: WORKLOAD<TAB>PEER<TAB>comma-separated samples, in the units the
Rust harness uses (M tasks/s, microseconds, M items/s). Input sizes are smaller than the Rust
runs (Python is slower); rates are per second, so they compare directly.
"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor, ProcessPoolExecutor
import os

CORES = os.cpu_count() or 1
RUNS = 3


def noop(i):
    return i


def submit_collect(ex, n):
    start = time.perf_counter()
    futs = [ex.submit(noop, i) for i in range(n)]
    total = sum(f.result() for f in futs)
    secs = time.perf_counter() - start
    assert total == n * (n - 1) // 2
    return n / secs / 1e6


def round_trip(ex, n):
    for i in range(200):
        ex.submit(noop, i).result()
    samples = []
    for i in range(n):
        start = time.perf_counter()
        ex.submit(noop, i).result()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return samples[n // 2], samples[n * 99 // 100]


def map_rate(ex, n, **kw):
    start = time.perf_counter()
    total = sum(ex.map(noop, range(n), **kw))
    secs = time.perf_counter() - start
    assert total == n * (n - 1) // 2
    return n / secs / 1e6


def pool_rate(pool, n):
    start = time.perf_counter()
    res = [pool.apply_async(noop, (i,)) for i in range(n)]
    total = sum(r.get() for r in res)
    secs = time.perf_counter() - start
    assert total == n * (n - 1) // 2
    return n / secs / 1e3


def emit(workload, peer, samples):
    print(f"{workload}\t{peer}\t{','.join(f'{s:.6g}' for s in samples)}", flush=True)


def main(argv):
    wanted = {a.upper() for a in argv} or {"A", "C", "F", "P"}
    with ThreadPoolExecutor(max_workers=CORES) as ex:
        if "A" in wanted:
            emit("A", "python ThreadPoolExecutor", [submit_collect(ex, 100_000) for _ in range(RUNS)])
        if "C" in wanted:
            runs = [round_trip(ex, 10_000) for _ in range(RUNS)]
            emit("C50", "python ThreadPoolExecutor", [r[0] for r in runs])
            emit("C99", "python ThreadPoolExecutor", [r[1] for r in runs])
        if "F" in wanted:
            emit("F", "python ThreadPoolExecutor.map", [map_rate(ex, 100_000) for _ in range(RUNS)])
    if "P" in wanted:
        import multiprocessing
        with ProcessPoolExecutor(max_workers=CORES) as ex:
            runs = [round_trip(ex, 2_000) for _ in range(RUNS)]
            emit("P50", "python ProcessPoolExecutor", [r[0] for r in runs])
            emit("P99", "python ProcessPoolExecutor", [r[1] for r in runs])
            emit("PT", "python ProcessPoolExecutor", [submit_collect(ex, 10_000) * 1e3 for _ in range(RUNS)])
            emit("PM", "python ProcessPoolExecutor.map(chunksize=1000)",
                 [map_rate(ex, 1_000_000, chunksize=1000) for _ in range(RUNS)])
        with multiprocessing.Pool(CORES) as pool:
            emit("PT", "python multiprocessing.Pool.apply_async", [pool_rate(pool, 20_000) for _ in range(RUNS)])
            start_rates = []
            for _ in range(RUNS):
                start = time.perf_counter()
                total = sum(pool.imap(noop, range(1_000_000), chunksize=1000))
                start_rates.append(1_000_000 / (time.perf_counter() - start) / 1e6)
                assert total == 1_000_000 * 999_999 // 2
            emit("PM", "python multiprocessing.Pool.imap(chunksize=1000)", start_rates)


if __name__ == "__main__":
    main(sys.argv[1:])
