"""The no-op tasks of benches/redis_peers.py, importable by RQ and Celery workers."""
import os

from celery import Celery

PORT = os.environ.get("CF_BENCH_REDIS_PORT", "6379")
app = Celery(
    "redis_peers_tasks",
    broker=f"redis://127.0.0.1:{PORT}/0",
    backend=f"redis://127.0.0.1:{PORT}/0",
)
app.conf.update(worker_hijack_root_logger=False, result_expires=3600)


def noop():
    return None


@app.task(name="noop")
def celery_noop():
    """Celery's default delivery: acknowledged when a worker receives it (at most once)."""
    return None


@app.task(name="noop_late", acks_late=True)
def celery_noop_late():
    """Acknowledged after it ran: redelivered if its worker dies (after the broker's
    visibility timeout, an hour by default), at least once, as ours."""
    return None
