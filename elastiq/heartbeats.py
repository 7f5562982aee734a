"""Reading workers' heartbeats: one JSON document per live worker, under a key with a TTL.

The worker writes them (:mod:`workers.heartbeat`); the autoscaler's signals, the local
stack's status and the tests read them here.
"""

from __future__ import annotations

import json

from elastiq import contract


def read_heartbeats(redis) -> dict[str, dict]:
    """Every live worker's heartbeat, by worker id."""
    keys = list(redis.scan_iter(match=contract.HEARTBEAT_PREFIX + "*", count=500))
    if not keys:
        return {}
    beats = {}
    for raw in redis.mget(keys):
        if raw:
            try:
                hb = json.loads(raw)
                beats[hb["worker_id"]] = hb
            except (ValueError, KeyError, TypeError):
                continue
    return beats
