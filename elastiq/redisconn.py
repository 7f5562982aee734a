"""A plain redis-py client for elastiq's own keys, and the TLS options every client uses.

Kept apart from the Celery configuration so that the client SDK, the autoscaler and the
status command never import Celery.
"""

from __future__ import annotations

import os
import ssl
from urllib.parse import urlsplit, urlunsplit

from elastiq.settings import Settings


def tls_options() -> dict:
    """Certificate checks on by default (kombu silently skips them without this)."""
    opts = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if os.environ.get("ELASTIQ_REDIS_CA"):
        opts["ssl_ca_certs"] = os.environ["ELASTIQ_REDIS_CA"]
    if os.environ.get("ELASTIQ_REDIS_CERT"):
        opts["ssl_certfile"] = os.environ["ELASTIQ_REDIS_CERT"]
        opts["ssl_keyfile"] = os.environ.get("ELASTIQ_REDIS_KEY", "")
    return opts


def redis_client(settings: Settings):
    """A plain redis-py client for elastiq's own keys (heartbeats, records, stats)."""
    import redis

    kwargs: dict = {"decode_responses": True, "socket_timeout": 10, "socket_connect_timeout": 5,
                    "health_check_interval": 10, "retry_on_timeout": True}
    if settings.redis_url.startswith("rediss://"):
        tls = tls_options()
        kwargs["ssl_cert_reqs"] = "required"
        if "ssl_ca_certs" in tls:
            kwargs["ssl_ca_certs"] = tls["ssl_ca_certs"]
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
