"""Worker exits, newest first, in Redis: who exited, with which code, planned or not.

Written by whatever starts workers and can see them end (the local supervisor, the process
backend of the autoscaler); read by ``elastiq status``, where a crash loop shows as a run
of unplanned exits with their codes.
"""

from __future__ import annotations

import json

from elastiq import contract

KEEP = 200


def record_exit(redis, entry: dict) -> None:
    pipe = redis.pipeline(transaction=False)
    pipe.lpush(contract.EXITS_KEY, json.dumps(entry))
    pipe.ltrim(contract.EXITS_KEY, 0, KEEP - 1)
    pipe.execute()


def recent_exits(redis, limit: int = 10) -> list[dict]:
    out = []
    for raw in redis.lrange(contract.EXITS_KEY, 0, max(0, limit) - 1):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out
