"""The docker backend: worker containers labelled with this pool's id.

Every container it starts carries ``elastiq.pool=<pool>`` and ``elastiq.group=<model>``;
``list`` and ``stop`` only ever see containers with this pool's label, so nothing else on
the engine (other pools, compose projects, bystanders) is touched.

Configuration (environment, read by :meth:`DockerBackend.from_env`):

====================================  ==================  =====================================
``ELASTIQ_DOCKER_IMAGE``              ``elastiq:latest``  image of the worker containers
``ELASTIQ_DOCKER_POOL``               ``elastiq``         pool id (the ``elastiq.pool`` label)
``ELASTIQ_DOCKER_NETWORK``            ``elastiq-<pool>``  network name, or ``host`` (only if asked)
``ELASTIQ_DOCKER_CPUS``               ``1``               CPU limit per worker (0: none)
``ELASTIQ_DOCKER_MEMORY_MB``          ``2048``            memory limit per worker (0: none)
``ELASTIQ_DOCKER_STOP_TIMEOUT_S``     ``200``             SIGTERM -> SIGKILL grace on stop
``ELASTIQ_DOCKER_API_TIMEOUT_S``      ``30``              timeout of one Docker API call
``ELASTIQ_DOCKER_WORKER_ARGS``        (none)              extra ``elastiq worker`` arguments
``DOCKER_HOST``                       local socket        engine (or socket proxy) address
====================================  ==================  =====================================

**Network.** By default each worker joins ``elastiq-<pool>``, a user-defined bridge network
labelled ``elastiq.pool=<pool>``, created on the first start if it is missing. Host
networking (``ELASTIQ_DOCKER_NETWORK=host``) is used only when asked for: it hands the
containers the host's loopback, including any password-less service listening there. On
the pool network, ``ELASTIQ_REDIS_URL`` must name a Redis the network reaches (attach the
Redis container to it, or give a routable address). Through the socket proxy the network
must exist already (the proxy refuses network calls): create it once with
:meth:`DockerBackend.ensure_network` or ``docker network create --label elastiq.pool=<pool>``.

Workers get ``ELASTIQ_WORKER_ID`` (the id they heartbeat under), ``ELASTIQ_WORKER_MODELS``
(their group) and every other ``ELASTIQ_*`` variable of the autoscaler's environment
(Redis URL, timeouts...), except the backend's own ``ELASTIQ_DOCKER_*``/``ELASTIQ_AUTOSCALE_*``.
The stop timeout must be longer than a job (``ELASTIQ_JOB_TIME_LIMIT_S``, 180 s by default).
"""

from __future__ import annotations

import logging
import os
import shlex
import time
import uuid
from collections.abc import Mapping

from autoscaler.backends.base import STOP_TIMEOUT_S, BackendError, Replica
from autoscaler.backends.engine import LIVE_STATES, EngineClient, created_at, short, stop_and_remove
from elastiq.envconfig import number
from elastiq.errors import ConfigError

log = logging.getLogger(__name__)

POOL_LABEL = "elastiq.pool"
GROUP_LABEL = "elastiq.group"
WORKER_LABEL = "elastiq.worker_id"
# Variables of the autoscaler that are not the workers' business.
_NOT_FORWARDED = ("ELASTIQ_DOCKER_", "ELASTIQ_AUTOSCALE_", "ELASTIQ_COMPOSE_", "ELASTIQ_WORKER_ID",
                  "ELASTIQ_WORKER_MODELS", "ELASTIQ_HOME", "ELASTIQ_PROXY_")


def pool_network(pool: str) -> str:
    """The default network of a pool's worker containers."""
    return f"elastiq-{pool}"


def worker_env(env: Mapping[str, str]) -> dict[str, str]:
    """The ``ELASTIQ_*`` settings a worker container inherits from the autoscaler."""
    return {k: v for k, v in env.items() if k.startswith("ELASTIQ_") and not k.startswith(_NOT_FORWARDED)}


def replica_of(container, group: str, worker_id: str) -> Replica:
    """A :class:`Replica` from a Docker SDK container object."""
    status = "running" if container.status in LIVE_STATES else "exited"
    return Replica(worker_id, group, container.id, created_at(container.attrs), status)


class DockerBackend(EngineClient):
    """Worker containers of one pool on one Docker Engine."""

    name = "docker"

    def __init__(self, image: str = "elastiq:latest", *, pool: str = "elastiq", network: str = "",
                 cpus: float = 1.0, memory_mb: int = 2048, stop_timeout_s: float = STOP_TIMEOUT_S,
                 api_timeout_s: float = 30.0, env: Mapping[str, str] | None = None,
                 worker_args: list[str] | None = None, docker_host: str | None = None, client=None):
        if not pool or not all(c.isalnum() or c in "-_." for c in pool):
            raise ConfigError(f"ELASTIQ_DOCKER_POOL {pool!r} may use only letters, digits, '-', '_' and '.'")
        if not image:
            raise ConfigError("ELASTIQ_DOCKER_IMAGE must name an image")
        self.image = image
        self.pool = pool
        self.network = network or pool_network(pool)
        self.cpus = cpus
        self.memory_mb = int(memory_mb)
        self.stop_timeout_s = stop_timeout_s
        self.api_timeout_s = api_timeout_s
        self.env = dict(env or {})
        self.worker_args = list(worker_args or [])
        self.docker_host = docker_host
        self._client = client

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DockerBackend:
        env = os.environ if env is None else env
        return cls(
            env.get("ELASTIQ_DOCKER_IMAGE", "elastiq:latest"),
            pool=env.get("ELASTIQ_DOCKER_POOL", "elastiq"),
            network=env.get("ELASTIQ_DOCKER_NETWORK", ""),
            cpus=number(env, "ELASTIQ_DOCKER_CPUS", 1.0),
            memory_mb=int(number(env, "ELASTIQ_DOCKER_MEMORY_MB", 2048)),
            stop_timeout_s=number(env, "ELASTIQ_DOCKER_STOP_TIMEOUT_S", STOP_TIMEOUT_S),
            api_timeout_s=number(env, "ELASTIQ_DOCKER_API_TIMEOUT_S", 30.0) or 30.0,
            env=worker_env(env),
            worker_args=shlex.split(env.get("ELASTIQ_DOCKER_WORKER_ARGS", "")),
            docker_host=env.get("DOCKER_HOST") or None,
        )

    # -- Backend

    def list(self, group: str) -> list[Replica]:
        """Live containers of this pool and group. Exited ones (a crashed worker) are
        removed here, so they are neither counted nor left behind."""
        replicas = []
        for c in self._containers(group):
            if c.status not in LIVE_STATES:
                log.warning("worker container %s (%s) exited with %s: removing it",
                            c.name, c.labels.get(WORKER_LABEL), c.attrs.get("State", {}).get("ExitCode"))
                self._remove(c)
                continue
            replicas.append(replica_of(c, group, c.labels.get(WORKER_LABEL) or c.name))
        return replicas

    def start(self, group: str) -> Replica:
        if self.network == pool_network(self.pool):
            self.ensure_network()
        suffix = uuid.uuid4().hex[:8]
        worker_id = f"{group}-{suffix}@{self.pool}"
        env = {**self.env, "ELASTIQ_WORKER_ID": worker_id, "ELASTIQ_WORKER_MODELS": group,
               "ELASTIQ_SPAWNED_AT": f"{time.time():.3f}"}
        kwargs: dict = dict(
            image=self.image, command=["worker", *self.worker_args], name=f"{self.pool}-{group}-{suffix}",
            environment=env, detach=True, stop_signal="SIGTERM",
            labels={POOL_LABEL: self.pool, GROUP_LABEL: group, WORKER_LABEL: worker_id},
            security_opt=["no-new-privileges"], cap_drop=["ALL"],
        )
        if self.network in ("host", "bridge", "none"):
            kwargs["network_mode"] = self.network
        else:
            kwargs["network"] = self.network
        if self.cpus:
            kwargs["nano_cpus"] = int(self.cpus * 1e9)
        if self.memory_mb:
            kwargs["mem_limit"] = f"{self.memory_mb}m"
        try:
            container = self.client.containers.run(**kwargs)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"cannot start a worker container from {self.image}: {short(exc)}") from exc
        log.info("started container %s for %s", container.name, worker_id)
        return replica_of(container, group, worker_id)

    def stop(self, replica: Replica) -> None:
        container = self._get(replica.handle)
        if container is None:
            return
        if container.labels.get(POOL_LABEL) != self.pool:     # never touch another pool's
            raise BackendError(f"container {replica.handle[:12]} is not in pool {self.pool!r}")
        stop_and_remove(container, self.stop_timeout_s)

    # -- extras

    def ensure_network(self) -> None:
        """Create this pool's bridge network if it is missing (labelled with the pool id).

        Behind the socket proxy network calls are refused (403): the network is then the
        operator's to create, and a missing one fails the container create clearly."""
        import docker.errors

        try:
            self.client.networks.get(self.network)
        except docker.errors.NotFound:
            try:
                self.client.networks.create(self.network, driver="bridge", labels={POOL_LABEL: self.pool})
                log.info("created network %s for pool %s", self.network, self.pool)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:          # created meanwhile by another autoscaler
                    raise BackendError(f"cannot create network {self.network}: {short(exc)}") from exc
        except docker.errors.APIError as exc:
            if exc.status_code != 403:
                raise BackendError(f"cannot inspect network {self.network}: {short(exc)}") from exc
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"cannot reach the Docker Engine: {short(exc)}") from exc

    def remove_network(self) -> bool:
        """Remove this pool's own network (only one labelled with this pool); True if removed."""
        import docker.errors

        try:
            net = self.client.networks.get(self.network)
            if (net.attrs.get("Labels") or {}).get(POOL_LABEL) != self.pool:
                return False
            net.remove()
            return True
        except docker.errors.NotFound:
            return False
        except Exception as exc:
            raise BackendError(f"cannot remove network {self.network}: {short(exc)}") from exc

    def stop_all(self) -> int:
        """Stop and remove every container of this pool (all groups); returns how many."""
        containers = self._containers(None)
        for c in containers:
            stop_and_remove(c, self.stop_timeout_s)
        return len(containers)

    def _containers(self, group: str | None) -> list:
        labels = [f"{POOL_LABEL}={self.pool}"] + ([f"{GROUP_LABEL}={group}"] if group else [])
        try:
            # ignore_removed: docker-py lists, then inspects each container; one removed in
            # between (a drained worker going away) is skipped, not a failed pass
            found = self.client.containers.list(all=True, filters={"label": labels}, ignore_removed=True)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"cannot list containers: {short(exc)}") from exc
        # The label filter is the engine's; check again so a proxy or bug cannot widen it.
        return [c for c in found if c.labels.get(POOL_LABEL) == self.pool
                and (group is None or c.labels.get(GROUP_LABEL) == group)]

    def _get(self, handle: str):
        import docker.errors

        try:
            return self.client.containers.get(handle)
        except docker.errors.NotFound:
            return None
        except Exception as exc:
            raise BackendError(f"cannot inspect container {handle[:12]}: {short(exc)}") from exc

    def _remove(self, container) -> None:
        try:
            container.remove(v=True, force=True)
        except Exception as exc:  # noqa: BLE001 - logged; the next pass tries again
            log.warning("cannot remove exited container %s: %s", container.name, short(exc))
