"""Container healthcheck: healthy once this worker's heartbeat says ``ready``.

The worker publishes ``elastiq:hb:<worker id>`` (a JSON snapshot with a TTL) only after
its models are loaded and its consumer is up, so "the key exists and says ready" means
"this container can take jobs". The id comes from ``ELASTIQ_WORKER_ID``; without it the
heartbeat whose ``host`` is this container's hostname is used. Exit 0 = healthy.
"""

from __future__ import annotations

import os
import socket
import sys


def main() -> int:
    import redis

    from elastiq import contract
    from elastiq.heartbeats import Heartbeat
    from elastiq.settings import Settings

    try:   # the settings' URL: with the password from ELASTIQ_REDIS_PASSWORD_FILE (Swarm, k8s)
        url = Settings.from_env().redis_url
        r = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3, decode_responses=True)
        wid = os.environ.get("ELASTIQ_WORKER_ID")
        keys = [contract.heartbeat_key(wid)] if wid else list(r.scan_iter(contract.HEARTBEAT_PREFIX + "*"))
        host = socket.gethostname()
        for key in keys:
            raw = r.get(key)
            if not raw:
                continue
            hb = Heartbeat.from_json(raw)
            if (wid or hb.host == host) and hb.ready:
                return 0
    except Exception as exc:  # noqa: BLE001 - Redis away or bad data: unhealthy, with the reason
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    print("unhealthy: no ready heartbeat for this worker yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
