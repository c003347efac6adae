"""RQ and Celery on the same redis-server as the Rust bench (benches/redis.rs runs this in a
virtualenv it creates under target/; usage: python redis_peers.py PORT).

Rows, as in the Rust bench: the raw Streams round trip from Python (XADD -> XREADGROUP BLOCK
in another process -> XADD -> XREAD BLOCK), one task's round trip (p50, p99), 10,000 no-op
tasks end to end with 2 worker processes (enqueue all, then wait for all), and Redis memory
per queued task.
"""
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time

import redis

PORT = int(sys.argv[1])
os.environ["CF_BENCH_REDIS_PORT"] = str(PORT)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
R = redis.Redis(port=PORT)


def pct(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)]


def echo():
    r = redis.Redis(port=PORT)
    try:
        r.xgroup_create("praw:in", "g", id="0", mkstream=True)
    except redis.ResponseError:
        pass
    while True:
        got = r.xreadgroup("g", "echo", {"praw:in": ">"}, count=1, block=0)
        if got:
            r.xadd("praw:out", {"r": "1"})


def raw(n=2000):
    p = mp.Process(target=echo, daemon=True)
    p.start()
    time.sleep(0.3)
    last = "0-0"
    times = []
    for i in range(n + 100):
        t = time.perf_counter()
        R.xadd("praw:in", {"a": "1"})
        got = R.xread({"praw:out": last}, count=1, block=0)
        last = got[0][1][0][0]
        if i >= 100:
            times.append(time.perf_counter() - t)
    p.terminate()
    return times


def used_memory():
    return R.info("memory")["used_memory"]


def workers(cmd, n=2):
    env = dict(os.environ, PYTHONPATH=HERE)
    return [subprocess.Popen(cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for _ in range(n)]


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def rq_bench():
    from rq import Queue
    from redis_peers_tasks import noop

    q = Queue("bench", connection=R)
    # Memory per queued task (no worker yet).
    R.flushall()
    before = used_memory()
    jobs = [q.enqueue(noop) for _ in range(10_000)]
    per_task = (used_memory() - before) / 10_000
    R.flushall()
    ws = workers([sys.executable, "-m", "rq.cli", "worker", "--url", f"redis://127.0.0.1:{PORT}",
                  "--worker-class", "rq.worker.SimpleWorker", "-q", "bench"])
    time.sleep(2)
    for _ in range(50):
        q.enqueue(noop).latest_result(timeout=10)
    rt = []
    for _ in range(300):
        t = time.perf_counter()
        res = q.enqueue(noop).latest_result(timeout=10)
        assert res is not None
        rt.append(time.perf_counter() - t)
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        jobs = [q.enqueue(noop) for _ in range(10_000)]
        for j in jobs:
            assert j.latest_result(timeout=120) is not None
        rates.append(10_000 / (time.perf_counter() - t))
    stop(ws)
    return rt, rates, per_task


def celery_bench():
    from redis_peers_tasks import celery_noop

    R.flushall()
    before = used_memory()
    for _ in range(10_000):
        celery_noop.delay()
    per_task = (used_memory() - before) / 10_000
    R.flushall()
    ws = workers([sys.executable, "-m", "celery", "-A", "redis_peers_tasks", "worker", "-P", "solo",
                  "--without-gossip", "--without-mingle", "--without-heartbeat",
                  "--loglevel=WARNING"])
    time.sleep(4)
    for _ in range(50):
        celery_noop.delay().get(timeout=10)
    rt = []
    for _ in range(300):
        t = time.perf_counter()
        celery_noop.delay().get(timeout=10)
        rt.append(time.perf_counter() - t)
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        rs = [celery_noop.delay() for _ in range(10_000)]
        for r in rs:
            r.get(timeout=120)
        rates.append(10_000 / (time.perf_counter() - t))
    stop(ws)
    return rt, rates, per_task


def report(name, rt, rates, per_task):
    print(f"{name}: round trip p50 {pct(rt, .5) * 1e6:.0f} µs, p99 {pct(rt, .99) * 1e6:.0f} µs; "
          f"10,000 no-op tasks end to end, 2 workers: {statistics.median(rates):.0f} tasks/s "
          f"(median of {len(rates)}; max {max(rates):.0f}); Redis memory per queued task: {per_task:.0f} B")


def main():
    t = raw()
    print(f"raw Streams round trip (Python redis-py, 2 processes): p50 {pct(t, .5) * 1e6:.0f} µs, "
          f"p99 {pct(t, .99) * 1e6:.0f} µs")
    R.flushall()
    import rq, celery
    report(f"RQ {rq.__version__} SimpleWorker", *rq_bench())
    R.flushall()
    report(f"Celery {celery.__version__} solo", *celery_bench())
    R.flushall()


if __name__ == "__main__":
    main()
