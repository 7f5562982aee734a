"""A plain-Celery app: the baselines elastiq is measured against.

Same broker and backend as elastiq (``BENCH_REDIS_URL``), JSON; Celery's own defaults
otherwise. Two tasks: ``bench.noop`` (the overhead benchmark: the debug kind's work) and
``bench.embed`` (the efficiency benchmark: the model of ``BENCH_MODEL`` loaded once per
worker process, one forward pass per job -- how a model is usually served with Celery,
with ``acks_late`` and prefetch 1 as Celery's docs advise for long tasks). Run with::

    BENCH_REDIS_URL=redis://... celery -A benchmarks.plain_celery worker -P threads -c 4 \\
        -Q bench.noop --without-mingle --without-gossip
"""

from __future__ import annotations

import os
import threading

from celery import Celery

QUEUE = "bench.noop"
EMBED_QUEUE = "bench.embed"

def make_app(url: str) -> Celery:
    """A plain Celery app on ``url`` (a fresh one per use: Celery caches its result backend
    and connection pools on first use, so an app must not outlive the Redis it points at)."""
    a = Celery("bench-plain", broker=url, backend=url)
    a.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                  worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
                  task_default_queue=QUEUE)
    return a


app = make_app(os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/0"))   # the workers' app


@app.task(name="bench.noop")
def noop(texts: list[str]) -> list[int]:
    """The same work as elastiq's debug kind: the length of each text."""
    return [len(t) for t in texts]


_runtime = None
_lock = threading.Lock()


def _model():
    global _runtime
    with _lock:
        if _runtime is None:
            from elastiq.registry import Registry
            from workers import runtime as rt

            spec = Registry.from_env().get(os.environ.get("BENCH_MODEL", "minilm"))
            _runtime = rt.load(spec, int(os.environ.get("ELASTIQ_WORKER_THREADS") or 1))
    return _runtime


@app.task(name="bench.embed", acks_late=True)
def embed(texts: list[str]) -> list:
    """One forward pass for this job's texts, as a plain Celery task would run a model."""
    rt = _model()
    return rt.postprocess(rt.forward(rt.encode(texts)), {})
