"""A plain redis-py client for elastiq's own keys, and the TLS options every client uses.

Kept apart from the Celery configuration so that the client SDK, the autoscaler and the
status command never import Celery.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit, urlunsplit

from elastiq.settings import Settings


def tls_options(settings: Settings) -> dict:
    """Certificate *and hostname* checks, set explicitly: kombu silently skips the
    certificate check without ``ssl_cert_reqs``, and redis-py's ``ssl_check_hostname``
    default has changed between versions (off before 6.0)."""
    opts: dict = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
    if settings.redis_ca:
        opts["ssl_ca_certs"] = settings.redis_ca
    if settings.redis_cert:
        opts["ssl_certfile"] = settings.redis_cert
        opts["ssl_keyfile"] = settings.redis_key or None
    return opts


def redis_client(settings: Settings):
    """A plain redis-py client for elastiq's own keys (heartbeats, records, stats)."""
    import redis

    kwargs: dict = {"decode_responses": True, "socket_timeout": 10, "socket_connect_timeout": 5,
                    "health_check_interval": 10, "retry_on_timeout": True}
    if settings.redis_url.startswith("rediss://"):
        kwargs.update(tls_options(settings))
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
