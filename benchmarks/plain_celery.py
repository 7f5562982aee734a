"""A minimal plain-Celery app and no-op task: the overhead benchmark's baseline.

Same broker and backend as elastiq (``BENCH_REDIS_URL``), JSON, the threads pool; Celery's
own defaults otherwise. Run a worker with::

    BENCH_REDIS_URL=redis://... celery -A benchmarks.plain_celery worker -P threads -c 4 \\
        -Q bench.noop --without-mingle --without-gossip
"""

from __future__ import annotations

import os

from celery import Celery

QUEUE = "bench.noop"

app = Celery("bench-plain", broker=os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/0"),
             backend=os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/0"))
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
                task_default_queue=QUEUE)


@app.task(name="bench.noop")
def noop(texts: list[str]) -> list[int]:
    """The same work as elastiq's debug kind: the length of each text."""
    return [len(t) for t in texts]
