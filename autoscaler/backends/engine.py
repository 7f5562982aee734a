"""What the docker and compose backends share: the Engine client, container timestamps,
short error texts, and the graceful stop."""

from __future__ import annotations

from datetime import datetime

from autoscaler.backends.base import BackendError

LIVE_STATES = ("created", "running", "restarting")


def docker_client(timeout_s: float, docker_host: str | None = None):
    """A Docker SDK client for ``docker_host`` (else ``DOCKER_HOST``, else the local socket)."""
    try:
        import docker

        if docker_host:
            return docker.DockerClient(base_url=docker_host, timeout=int(timeout_s))
        return docker.from_env(timeout=int(timeout_s))
    except Exception as exc:
        raise BackendError(f"cannot reach the Docker Engine: {short(exc)}") from exc


def stop_and_remove(container, timeout_s: float) -> None:
    """Graceful stop: SIGTERM (warm shutdown: running jobs finish), SIGKILL only after
    ``timeout_s``; then remove the container. A container already gone is not an error."""
    import docker.errors

    try:
        container.stop(timeout=int(timeout_s))
        container.remove(v=True)
    except docker.errors.NotFound:
        pass
    except Exception as exc:
        raise BackendError(f"cannot stop container {container.id[:12]}: {short(exc)}") from exc


def created_at(attrs: dict) -> float | None:
    raw = attrs.get("Created")
    if not raw:
        return None
    try:   # "2026-11-22T17:48:14.123456789Z": keep microseconds only
        head, _, frac = raw.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()
    except ValueError:
        return None


def short(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).splitlines()[0][:200] if text else type(exc).__name__


class EngineClient:
    """A Docker SDK client made on first use, from ``api_timeout_s`` and ``docker_host``."""

    api_timeout_s: float
    docker_host: str | None
    _client = None

    @property
    def client(self):
        if self._client is None:
            self._client = docker_client(self.api_timeout_s, self.docker_host)
        return self._client
