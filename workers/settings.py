"""A worker process's own settings (what every part shares is :class:`elastiq.settings.Settings`).

Read once from the environment by the one parser (:mod:`elastiq.envconfig`), then the
command line may override each; a bad value is a :class:`~elastiq.errors.ConfigError`
that names the variable or option.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from elastiq import contract, envconfig
from elastiq.errors import ConfigError


def _env(name: str) -> dict:
    return {"env": name}


@dataclass(frozen=True)
class WorkerSettings:
    models: str = field(default="minilm", metadata=_env("ELASTIQ_WORKER_MODELS"))
    slots: int = field(default=contract.DEFAULT_SLOTS, metadata=_env("ELASTIQ_WORKER_SLOTS"))
    threads: int = field(default=0, metadata=_env("ELASTIQ_WORKER_THREADS"))       # 0: the CPUs given
    max_batch: int = field(default=32, metadata=_env("ELASTIQ_MAX_BATCH"))
    max_batch_tokens: int = field(default=8192, metadata=_env("ELASTIQ_MAX_BATCH_TOKENS"))
    max_wait_ms: float = field(default=0.0, metadata=_env("ELASTIQ_MAX_WAIT_MS"))
    worker_id: str = field(default="", metadata=_env("ELASTIQ_WORKER_ID"))           # "": a random one
    log_level: str = field(default="INFO", metadata=_env("ELASTIQ_LOG_LEVEL"))
    max_rss_mb: float | None = field(default=None, metadata=_env("ELASTIQ_WORKER_MAX_RSS_MB"))   # None: no limit
    # exit 0 once drained: for orchestrators that remove exited tasks (Swarm, Kubernetes)
    exit_when_drained: bool = field(default=False, metadata=_env("ELASTIQ_WORKER_EXIT_WHEN_DRAINED"))
    # the job time limit of a worker that only trains (soft; hard = soft + 60 s)
    train_time_limit_s: float = field(default=7200.0, metadata=_env("ELASTIQ_TRAIN_TIME_LIMIT_S"))

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ConfigError(f"ELASTIQ_WORKER_SLOTS / --slots must be >= 1, got {self.slots}")
        if self.threads < 0:
            raise ConfigError(f"ELASTIQ_WORKER_THREADS / --threads must be >= 0, got {self.threads}")
        if self.max_batch < 1 or self.max_batch_tokens < 1:
            raise ConfigError("ELASTIQ_MAX_BATCH and ELASTIQ_MAX_BATCH_TOKENS must be >= 1")
        if self.max_wait_ms < 0:
            raise ConfigError(f"ELASTIQ_MAX_WAIT_MS must be >= 0, got {self.max_wait_ms}")
        if self.max_rss_mb is not None and self.max_rss_mb <= 0:
            raise ConfigError("ELASTIQ_WORKER_MAX_RSS_MB must be > 0")
        if self.train_time_limit_s <= 0:
            raise ConfigError(f"ELASTIQ_TRAIN_TIME_LIMIT_S must be > 0, got {self.train_time_limit_s}")
        if not [m for m in self.models.split(",") if m.strip()]:
            raise ConfigError("ELASTIQ_WORKER_MODELS / --models names no model")

    @property
    def model_names(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> WorkerSettings:
        return envconfig.read(cls, "ELASTIQ_WORKER_", env, **overrides)
