"""Settings shared by every part, read from ``ELASTIQ_*`` environment variables.

Units are in the names. A bad value raises :class:`~elastiq.errors.ConfigError` when the
object is built, never later inside a loop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from elastiq import envconfig
from elastiq.errors import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


@dataclass(frozen=True)
class Limits:
    """Input limits, enforced by the client before queueing and again by the worker."""

    max_text_chars: int = 8192
    max_items_per_job: int = 256
    max_message_bytes: int = 1_048_576

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ConfigError(f"{f.name} must be > 0, got {getattr(self, f.name)!r}")


@dataclass(frozen=True)
class Settings:
    """What every process that talks to the broker must agree on."""

    redis_url: str = DEFAULT_REDIS_URL
    home: Path = Path(".elastiq")
    job_soft_time_limit_s: float = 120.0
    job_time_limit_s: float = 180.0
    max_deliveries: int = 3
    result_ttl_s: int = 3600
    # A worker's heartbeat key lives this long after its last beat. Its existence is the
    # worker's liveness: once it expires, the jobs the worker held are handed out again
    # (elastiq/reservations.py). A dead worker's jobs come back within about this long.
    heartbeat_interval_s: float = 1.0
    heartbeat_ttl_s: float = 6.0
    # Per-job Celery task events cost the worker CPU per job. Off by default; Flower
    # switches them on over the control channel while it watches (workers/events.py).
    task_events: bool = False
    # TLS (a rediss:// URL): the CA to verify the server with (else the system store), and
    # a client certificate + key for `tls-auth-clients yes`. The server's certificate and
    # its hostname are always verified (elastiq/celeryconf.py).
    redis_ca: str = ""
    redis_cert: str = ""
    redis_key: str = ""
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"ELASTIQ_REDIS_URL must be a redis:// or rediss:// URL, got {self.redis_url!r}")
        weak = tls_weakening(self.redis_url)
        if weak:
            raise ConfigError(f"ELASTIQ_REDIS_URL: {weak}")
        if self.redis_key and not self.redis_cert:
            raise ConfigError("ELASTIQ_REDIS_KEY is set without ELASTIQ_REDIS_CERT")
        if self.job_soft_time_limit_s >= self.job_time_limit_s:
            raise ConfigError("ELASTIQ_JOB_SOFT_TIME_LIMIT_S must be below ELASTIQ_JOB_TIME_LIMIT_S")
        if self.max_deliveries < 1:
            raise ConfigError("ELASTIQ_MAX_DELIVERIES must be >= 1")
        if self.heartbeat_interval_s <= 0 or self.heartbeat_ttl_s < 2 * self.heartbeat_interval_s:
            raise ConfigError("ELASTIQ_HEARTBEAT_TTL_S must be at least twice ELASTIQ_HEARTBEAT_INTERVAL_S "
                              "(> 0): one late beat must not make a live worker look dead")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """``ELASTIQ_<FIELD>``, e.g. ELASTIQ_JOB_TIME_LIMIT_S=300 (limits: ELASTIQ_MAX_TEXT_CHARS, ...);
        ELASTIQ_REDIS_PASSWORD_FILE puts a secret file's password into the Redis URL."""
        env = os.environ if env is None else env
        overrides.setdefault("limits", envconfig.read(Limits, "ELASTIQ_", env))
        settings = envconfig.read(cls, "ELASTIQ_", env, **overrides)
        if env.get("ELASTIQ_REDIS_PASSWORD_FILE"):
            return replace(settings, redis_url=with_password_file(settings.redis_url, env["ELASTIQ_REDIS_PASSWORD_FILE"]))
        return settings


def with_password_file(url: str, path: str) -> str:
    """``url`` with the password read from ``path`` (a Swarm or Kubernetes secret file),
    so the password never sits in an environment variable. A URL that already has one
    is refused: two sources of one secret is a mistake, not a fallback."""
    from urllib.parse import quote

    try:
        password = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"ELASTIQ_REDIS_PASSWORD_FILE {path!r} cannot be read: {exc.strerror}") from None
    if not password:
        raise ConfigError(f"ELASTIQ_REDIS_PASSWORD_FILE {path!r} is empty")
    parts = urlsplit(url)
    if parts.password is not None:
        raise ConfigError("ELASTIQ_REDIS_URL has a password and ELASTIQ_REDIS_PASSWORD_FILE is set: use one")
    user = quote(parts.username or "", safe="")
    netloc = f"{user}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()


# URL query options that would switch certificate or hostname checks off: redis-py and
# kombu let a URL's query override what elastiq sets, so such a URL is refused instead.
_TLS_OFF = {"ssl_cert_reqs": ("required", "cert_required"), "ssl_check_hostname": ("true", "1", "yes", "on")}


def tls_weakening(url: str) -> str | None:
    """Why ``url`` would weaken TLS verification, or None."""
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        allowed = _TLS_OFF.get(key.lower())
        if allowed is not None and value.lower() not in allowed:
            return (f"{key}={value} would turn off TLS verification; rediss:// always verifies the "
                    "certificate and the hostname (use ELASTIQ_REDIS_CA for a private CA)")
    return None
