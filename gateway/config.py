"""The gateway's settings: ``ELASTIQ_GATEWAY_*`` variables (and CLI flags), checked at start.

Secure by default: bound to 127.0.0.1; a bearer token is required unless
``--insecure-no-auth`` is given *and* the bind address is loopback; tokens shorter than
:data:`MIN_TOKEN_CHARS` are refused. A bad value is a :class:`~elastiq.errors.ConfigError`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from elastiq import envconfig
from elastiq.errors import ConfigError

MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    tokens: tuple[str, ...] = ()
    insecure_no_auth: bool = False
    # the whole request body; refused with 413 before it is read in full
    max_body_bytes: int = 4 * 1024 * 1024
    # texts in one /v1/embeddings request (split into jobs of ELASTIQ_MAX_ITEMS_PER_JOB)
    max_inputs_per_request: int = 2048
    # 429 when a model's waiting jobs (all priority lists) would pass this
    max_backlog: int = 10_000
    backlog_refresh_s: float = 0.2       # how old a backlog reading may be before re-reading
    sync_timeout_s: float = 60.0         # default wait of /infer and /v1/embeddings
    max_sync_timeout_s: float = 300.0    # the most a caller may ask for
    submit_threads: int = 2              # the bounded executor that publishes jobs
    result_recheck_s: float = 1.0        # MGET results still awaited after this long

    def __post_init__(self) -> None:
        for name in ("port", "max_body_bytes", "max_inputs_per_request", "max_backlog", "submit_threads"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"gateway {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("backlog_refresh_s", "sync_timeout_s", "max_sync_timeout_s", "result_recheck_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"gateway {name} must be > 0, got {getattr(self, name)!r}")
        if self.sync_timeout_s > self.max_sync_timeout_s:
            raise ConfigError("ELASTIQ_GATEWAY_SYNC_TIMEOUT_S must not exceed ELASTIQ_GATEWAY_MAX_SYNC_TIMEOUT_S")
        short = [t for t in self.tokens if len(t) < MIN_TOKEN_CHARS]
        if short:
            raise ConfigError(f"{len(short)} gateway token(s) shorter than {MIN_TOKEN_CHARS} characters: "
                              "use long random tokens (python -c 'import secrets; print(secrets.token_urlsafe(32))')")

    def check_startup(self) -> None:
        """Refuse to serve without auth, unless explicitly insecure *and* on loopback."""
        if self.tokens:
            return
        if not self.insecure_no_auth:
            raise ConfigError("no gateway token: set ELASTIQ_GATEWAY_TOKENS (comma-separated) or "
                              "ELASTIQ_GATEWAY_TOKENS_FILE / --tokens-file (one per line); or, on "
                              "127.0.0.1 only, pass --insecure-no-auth")
        if not is_loopback(self.host):
            raise ConfigError(f"--insecure-no-auth is allowed on a loopback address only, not {self.host!r}")

    @property
    def auth_required(self) -> bool:
        return bool(self.tokens)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, tokens_file: str | None = None,
                 **overrides) -> GatewayConfig:
        env = os.environ if env is None else env
        given = {k: v for k, v in overrides.items() if v is not None}
        given.setdefault("tokens", load_tokens(env, tokens_file))
        return envconfig.read(cls, "ELASTIQ_GATEWAY_", env, skip=("insecure_no_auth",), **given)


def load_tokens(env: Mapping[str, str], tokens_file: str | None = None) -> tuple[str, ...]:
    """Tokens from ELASTIQ_GATEWAY_TOKENS (comma-separated) and a file (one per line, # comments)."""
    tokens = [t.strip() for t in env.get("ELASTIQ_GATEWAY_TOKENS", "").split(",") if t.strip()]
    path = tokens_file or env.get("ELASTIQ_GATEWAY_TOKENS_FILE")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the gateway tokens file {path}: {exc}") from None
        tokens += [line.strip() for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
    return tuple(dict.fromkeys(tokens))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
