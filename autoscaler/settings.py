"""The autoscaler process's own settings; the policy's are :class:`autoscaler.policy.PolicyConfig`.

Both read ``ELASTIQ_AUTOSCALE_<FIELD>`` through the one parser (:mod:`elastiq.envconfig`);
the command line may override each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from elastiq import envconfig
from elastiq.errors import ConfigError


@dataclass(frozen=True)
class AutoscalerSettings:
    backend: str = "process"
    models: str = "minilm"              # comma-separated; each model's queue is a scaling group
    interval_s: float = 1.0             # one decision per queue this often
    drain_timeout_s: float = 300.0      # a draining worker still busy after this is stopped anyway
    metrics_port: int = 0               # Prometheus metrics (0: off)
    metrics_addr: str = "127.0.0.1"
    desired_port: int = -1              # GET /desired/<model> for KEDA (-1: 9809 with --backend none, else off)
    desired_addr: str = "127.0.0.1"
    timeline: str = ""                  # append every decision to this JSON-lines file ("": off)

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ConfigError(f"ELASTIQ_AUTOSCALE_INTERVAL_S must be > 0, got {self.interval_s}")
        if self.drain_timeout_s < 0:
            raise ConfigError(f"ELASTIQ_AUTOSCALE_DRAIN_TIMEOUT_S must be >= 0, got {self.drain_timeout_s}")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"ELASTIQ_AUTOSCALE_METRICS_PORT must be a port (0: off), got {self.metrics_port}")
        if not -1 <= self.desired_port <= 65535:
            raise ConfigError(f"ELASTIQ_AUTOSCALE_DESIRED_PORT must be a port, 0 (off) or -1, got {self.desired_port}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> AutoscalerSettings:
        return envconfig.read(cls, "ELASTIQ_AUTOSCALE_", env, **overrides)
