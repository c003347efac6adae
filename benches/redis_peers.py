"""RQ and Celery on the same redis-server as the Rust bench, driven round by round.

benches/redis.rs starts this once in a virtualenv it creates under target/ (pip installs
RQ and Celery there) and writes one command per line on stdin; each command runs one round
of one peer and prints one line:

    RESULT <peer> <round trip p50 µs> <p99 µs> <end-to-end tasks/s> <memory B per queued task or ->

Commands: raw-python (the raw Streams round trip from Python), rq, celery, celery-late,
celery-prefork, memory (the two peers' Redis memory per queued task), quit.

Every peer gets what ours gets in a round: 2 worker processes of 1 task slot each, started
for the round and stopped after it; 50 warm-up round trips; 300 timed round trips (enqueue
one no-op task, wait for its result); 10,000 no-op tasks end to end (enqueue all, then wait
for every result).
"""
import multiprocessing as mp
import os
import subprocess
import sys
import time

import redis

PORT = int(sys.argv[1])
os.environ["CF_BENCH_REDIS_PORT"] = str(PORT)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
R = redis.Redis(port=PORT)
ROUND_TRIPS = 300
END_TO_END = 10_000


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


def raw():
    R.delete("praw:in", "praw:out")
    p = mp.Process(target=echo, daemon=True)
    p.start()
    time.sleep(0.3)
    last = "0-0"
    times = []
    for i in range(ROUND_TRIPS + 50):
        t = time.perf_counter()
        R.xadd("praw:in", {"a": "1"})
        got = R.xread({"praw:out": last}, count=1, block=0)
        last = got[0][1][0][0]
        if i >= 50:
            times.append(time.perf_counter() - t)
    p.terminate()
    p.join()
    R.delete("praw:in", "praw:out")
    return times, None


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
            p.wait()


def timed(submit_and_wait, submit, wait):
    """Warm-up, round trips, then the end-to-end burst; returns (round trips, tasks/s)."""
    for _ in range(50):
        submit_and_wait()
    rt = []
    for _ in range(ROUND_TRIPS):
        t = time.perf_counter()
        submit_and_wait()
        rt.append(time.perf_counter() - t)
    t = time.perf_counter()
    handles = [submit() for _ in range(END_TO_END)]
    for h in handles:
        wait(h)
    return rt, END_TO_END / (time.perf_counter() - t)


def rq_round():
    from rq import Queue, Worker
    from redis_peers_tasks import noop

    R.flushall()
    q = Queue("bench", connection=R)
    ws = workers([sys.executable, "-m", "rq.cli", "worker", "--url", f"redis://127.0.0.1:{PORT}",
                  "--worker-class", "rq.worker.SimpleWorker", "-q", "bench"])
    while Worker.count(connection=R) < 2:
        time.sleep(0.05)

    def wait(job):
        assert job.latest_result(timeout=120) is not None

    rt, rate = timed(lambda: wait(q.enqueue(noop)), lambda: q.enqueue(noop), wait)
    stop(ws)
    return rt, rate


def celery_round(task_name, pool):
    import redis_peers_tasks as t

    R.flushall()
    task = {"noop": t.celery_noop, "noop_late": t.celery_noop_late}[task_name]
    ws = workers([sys.executable, "-m", "celery", "-A", "redis_peers_tasks", "worker",
                  "-P", pool, "-c", "1", "--without-gossip", "--without-mingle",
                  "--without-heartbeat", "--loglevel=WARNING"])
    # Both workers up: each answers a ping (the remote-control queue), not only the first.
    deadline = time.time() + 60
    while len(t.app.control.ping(timeout=0.5) or []) < 2 and time.time() < deadline:
        pass
    rt, rate = timed(lambda: task.delay().get(timeout=120), task.delay,
                     lambda r: r.get(timeout=120))
    stop(ws)
    return rt, rate


def memory():
    from rq import Queue
    from redis_peers_tasks import noop, celery_noop

    out = {}
    R.flushall()
    q = Queue("bench", connection=R)
    before = used_memory()
    for _ in range(END_TO_END):
        q.enqueue(noop)
    out["rq"] = (used_memory() - before) / END_TO_END
    R.flushall()
    before = used_memory()
    for _ in range(END_TO_END):
        celery_noop.delay()
    out["celery"] = (used_memory() - before) / END_TO_END
    R.flushall()
    return out


def report(name, rt, rate, mem=None):
    p50 = pct(rt, .5) * 1e6
    p99 = pct(rt, .99) * 1e6
    rate = "-" if rate is None else f"{rate:.1f}"
    mem = "-" if mem is None else f"{mem:.0f}"
    print(f"RESULT {name} {p50:.1f} {p99:.1f} {rate} {mem}", flush=True)


def main():
    import celery
    import rq

    print(f"VERSIONS rq {rq.__version__} celery {celery.__version__}", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "raw-python":
            report("raw-python", *raw())
        elif cmd == "rq":
            report("rq", *rq_round())
        elif cmd == "celery":
            report("celery", *celery_round("noop", "solo"))
        elif cmd == "celery-late":
            report("celery-late", *celery_round("noop_late", "solo"))
        elif cmd == "celery-prefork":
            report("celery-prefork", *celery_round("noop", "prefork"))
        elif cmd == "memory":
            m = memory()
            print(f"MEMORY rq {m['rq']:.0f} celery {m['celery']:.0f}", flush=True)
        elif cmd == "quit":
            break
        else:
            print(f"unknown command {cmd!r}", file=sys.stderr, flush=True)
            print("RESULT error - - - -", flush=True)


if __name__ == "__main__":
    main()
