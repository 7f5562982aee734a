"""The compose backend: the ``worker`` service of a ``docker compose`` project.

It reads and writes the same containers ``docker compose`` does. A container it starts
carries the compose labels (project, service, the next container number, ``oneoff=False``,
the config hash copied from an existing container of the service) and joins the same
networks, so ``docker compose ps`` lists it and ``docker compose down`` removes it.
``list`` asks the engine every time: after a manual ``docker compose up -d --scale
worker=N`` the current count is simply N, the autoscaler's next decision starts from it.

**Template.** A new container is a copy of an existing container of the service (image,
command, environment, healthcheck, limits, networks), so the compose file stays the one
source of its configuration. The service therefore always keeps one container: the stop
of the last one stops it without removing it, and a later ``start`` restarts a stopped
container before creating a new one. ``docker compose up -d`` creates the first one
(compose's default scale is 1); with none at all ``start`` raises :class:`BackendError`.

Configuration (environment, read by :meth:`ComposeBackend.from_env`):

``ELASTIQ_DOCKER_PROJECT``         compose project name (default ``COMPOSE_PROJECT_NAME``)
``ELASTIQ_DOCKER_SERVICE``         the scalable service (default ``worker``)
``ELASTIQ_DOCKER_STOP_TIMEOUT_S``  SIGTERM -> SIGKILL grace on stop (default 200)
``ELASTIQ_DOCKER_API_TIMEOUT_S``   timeout of one Docker API call (default 30)
``DOCKER_HOST``                    the engine, or the project's socket proxy
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping

from autoscaler.backends.base import STOP_TIMEOUT_S, BackendError, Replica
from autoscaler.backends.docker import GROUP_LABEL
from autoscaler.backends.engine import LIVE_STATES, EngineClient, created_at, short, stop_and_remove
from elastiq.envconfig import number
from elastiq.errors import ConfigError

log = logging.getLogger(__name__)

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
NUMBER = "com.docker.compose.container-number"
ONEOFF = "com.docker.compose.oneoff"
# Container settings copied from the template (anything else keeps the engine default).
_CONFIG_KEYS = ("Image", "Env", "Cmd", "Entrypoint", "Healthcheck", "StopSignal", "StopTimeout",
                "User", "WorkingDir")
_HOST_KEYS = ("NetworkMode", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "Memory", "MemorySwap",
              "MemoryReservation", "RestartPolicy", "LogConfig", "Init", "SecurityOpt", "CapDrop",
              "ShmSize", "PidsLimit", "ReadonlyRootfs", "Tmpfs", "ExtraHosts", "Dns", "Ulimits")


def env_of(info: dict) -> dict[str, str]:
    pairs = (e.partition("=") for e in (info.get("Config") or {}).get("Env") or [])
    return {k: v for k, _, v in pairs}


def group_of(info: dict) -> str:
    labels = (info.get("Config") or {}).get("Labels") or {}
    if labels.get(GROUP_LABEL):
        return labels[GROUP_LABEL]
    return (env_of(info).get("ELASTIQ_WORKER_MODELS") or "minilm").split(",")[0].strip()


def worker_id_of(info: dict) -> str:
    """The id the container heartbeats under: its ``ELASTIQ_WORKER_ID``, else the one
    ``compose/worker_entry.py`` derives, ``<first model>-<hostname>``."""
    env = env_of(info)
    if env.get("ELASTIQ_WORKER_ID"):
        return env["ELASTIQ_WORKER_ID"]
    return f"{group_of(info)}-{(info.get('Config') or {}).get('Hostname') or info['Id'][:12]}"


class ComposeBackend(EngineClient):
    """The scalable service of one compose project."""

    name = "compose"

    def __init__(self, project: str, service: str = "worker", *, stop_timeout_s: float = STOP_TIMEOUT_S,
                 api_timeout_s: float = 30.0, docker_host: str | None = None, client=None):
        if not project:
            raise ConfigError("ELASTIQ_DOCKER_PROJECT (or COMPOSE_PROJECT_NAME) must name the compose project")
        if not service:
            raise ConfigError("ELASTIQ_DOCKER_SERVICE must name the worker service")
        self.project = project
        self.service = service
        self.stop_timeout_s = stop_timeout_s
        self.api_timeout_s = api_timeout_s
        self.docker_host = docker_host
        self._client = client

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ComposeBackend:
        env = os.environ if env is None else env
        return cls(env.get("ELASTIQ_DOCKER_PROJECT") or env.get("COMPOSE_PROJECT_NAME", ""),
                   env.get("ELASTIQ_DOCKER_SERVICE", "worker"),
                   stop_timeout_s=number(env, "ELASTIQ_DOCKER_STOP_TIMEOUT_S", STOP_TIMEOUT_S),
                   api_timeout_s=number(env, "ELASTIQ_DOCKER_API_TIMEOUT_S", 30.0) or 30.0,
                   docker_host=env.get("DOCKER_HOST") or None)

    # -- Backend

    def list(self, group: str) -> list[Replica]:
        """The service's running (or starting) containers that serve ``group``."""
        return [Replica(worker_id_of(info), group, info["Id"], created_at(info), "running")
                for info in self._service(all_=False)
                if info["State"]["Status"] in LIVE_STATES and group_of(info) == group]

    def start(self, group: str) -> Replica:
        containers = self._service(all_=True)
        if not containers:
            raise BackendError(f"service {self.service!r} of project {self.project!r} has no container to "
                               "copy: run `docker compose up -d` (scale >= 1) first")
        if not any(group_of(i) == group for i in containers):
            raise BackendError(f"service {self.service!r} does not serve model {group!r}")
        for info in containers:      # a stopped one (kept as the template) comes back first
            if info["State"]["Status"] not in LIVE_STATES and group_of(info) == group:
                self._call("start", lambda cid=info["Id"]: self.client.api.start(cid))
                return Replica(worker_id_of(info), group, info["Id"], time.time(), "running")
        template = next(i for i in containers if group_of(i) == group)
        number = 1 + max(int(((i.get("Config") or {}).get("Labels") or {}).get(NUMBER, 0) or 0) for i in containers)
        worker_id = f"{group}-{uuid.uuid4().hex[:8]}@{self.project}"
        config = self._config_from(template, number, worker_id)
        name = f"{self.project}-{self.service}-{number}"
        created = self._call("create", lambda: self.client.api.create_container_from_config(config, name))
        self._call("start", lambda: self.client.api.start(created["Id"]))
        log.info("started %s (%s) from the template %s", name, worker_id, template["Name"].lstrip("/"))
        return Replica(worker_id, group, created["Id"], time.time(), "running")

    def stop(self, replica: Replica) -> None:
        """Warm stop (SIGTERM, SIGKILL after the grace), then remove -- unless it is the
        service's last container, which stays (stopped) as the template."""
        import docker.errors

        try:
            container = self.client.containers.get(replica.handle)
        except docker.errors.NotFound:
            return
        except Exception as exc:
            raise BackendError(f"cannot inspect container {replica.handle[:12]}: {short(exc)}") from exc
        labels = container.labels
        if labels.get(PROJECT) != self.project or labels.get(SERVICE) != self.service:
            raise BackendError(f"container {replica.handle[:12]} is not in {self.project}/{self.service}")
        others = [i for i in self._service(all_=True) if i["Id"] != container.id]
        if others:
            stop_and_remove(container, self.stop_timeout_s)
            return
        log.info("keeping %s stopped as the service's template", container.name)
        self._call("stop", lambda: container.stop(timeout=int(self.stop_timeout_s)))

    # -- helpers

    def _service(self, all_: bool) -> list[dict]:
        """Inspect data of the service's containers (one-offs excluded)."""
        filters = {"label": [f"{PROJECT}={self.project}", f"{SERVICE}={self.service}", f"{ONEOFF}=False"]}
        rows = self._call("list", lambda: self.client.api.containers(all=all_, filters=filters))
        infos = []
        for row in rows:
            labels = row.get("Labels") or {}
            if labels.get(PROJECT) != self.project or labels.get(SERVICE) != self.service:
                continue
            try:
                infos.append(self.client.api.inspect_container(row["Id"]))
            except Exception as exc:
                if getattr(exc, "status_code", None) == 404:   # removed meanwhile
                    continue
                raise BackendError(f"cannot inspect container {row['Id'][:12]}: {short(exc)}") from exc
        return sorted(infos, key=lambda i: int(((i.get("Config") or {}).get("Labels") or {}).get(NUMBER, 0) or 0))

    def _config_from(self, template: dict, number: int, worker_id: str) -> dict:
        cfg = template.get("Config") or {}
        config = {k: cfg[k] for k in _CONFIG_KEYS if cfg.get(k) not in (None, "", [])}
        env = {k: v for k, v in env_of(template).items() if k not in ("ELASTIQ_WORKER_ID", "ELASTIQ_SPAWNED_AT")}
        env.update(ELASTIQ_WORKER_ID=worker_id, ELASTIQ_SPAWNED_AT=f"{time.time():.3f}")
        config["Env"] = [f"{k}={v}" for k, v in env.items()]
        labels = {k: v for k, v in (cfg.get("Labels") or {}).items() if k.startswith(("com.docker.compose.", "elastiq."))}
        labels.update({NUMBER: str(number), ONEOFF: "False"})
        config["Labels"] = labels
        host = template.get("HostConfig") or {}
        config["HostConfig"] = {k: host[k] for k in _HOST_KEYS if host.get(k) not in (None, "", [], {}, 0)}
        nets = (template.get("NetworkSettings") or {}).get("Networks") or {}
        config["NetworkingConfig"] = {"EndpointsConfig": {
            net: {"Aliases": [self.service]} for net in nets}}
        return config

    def _call(self, what: str, fn):
        try:
            return fn()
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"docker {what} failed for {self.project}/{self.service}: {short(exc)}") from exc
