"""Local processes: a redis-server and worker processes, started and stopped by pid.

Used by the local stack (``elastiq up``), the process backend of the autoscaler, and the
tests, so there is one way to start each thing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from elastiq.errors import ConfigError
from elastiq.heartbeats import read_heartbeats


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 10.0, host: str = "127.0.0.1") -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


MAXMEMORY_ENV = "ELASTIQ_REDIS_MAXMEMORY_MB"


def host_memory_mb(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """The host's memory (``MemTotal``) in MB, or None when it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def redis_maxmemory_mb(env=None, meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The local Redis's ``maxmemory`` in MB: ``ELASTIQ_REDIS_MAXMEMORY_MB`` (0: no limit),
    else half the host's memory (None when it cannot be read: no limit).

    Answers stay ``ELASTIQ_RESULT_TTL_S`` (an hour) at ~5.5 KB a job (`elastiq bench
    sustained`): ~10 GB an hour at 500 jobs/s. With no limit Redis grows until the kernel
    kills it (or a process beside it); with one, and ``noeviction``, a full Redis refuses
    new jobs with ``BrokerFullError`` and keeps every job and answer it holds. Half the
    host leaves the rest to the workers and to the fork of an AOF rewrite."""
    env = os.environ if env is None else env
    raw = env.get(MAXMEMORY_ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value < 0:
            raise ConfigError(f"{MAXMEMORY_ENV} must be a whole number of MB >= 0 (0: no limit), got {raw!r}")
        return value or None
    total = host_memory_mb(meminfo)
    return int(total) // 2 if total else None


@dataclass
class RedisProcess:
    """A redis-server on loopback with AOF on, its files under ``dir``; ``maxmemory_mb``
    (default :func:`redis_maxmemory_mb`) with ``noeviction``: full means refusing writes."""

    port: int
    dir: Path
    password: str | None = None
    appendfsync: str = "everysec"
    proc: subprocess.Popen | None = None
    maxmemory_mb: int | None = field(default_factory=redis_maxmemory_mb)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        exe = shutil.which("redis-server")
        if exe is None:
            raise ConfigError("redis-server is not installed (apt-get install -y redis-server)")
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes",
                "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", self.appendfsync,
                "--save", "", "--maxmemory-policy", "noeviction",
                "--logfile", str(self.dir / "redis.log"), "--daemonize", "no"]
        if self.maxmemory_mb:
            args += ["--maxmemory", f"{int(self.maxmemory_mb)}mb"]
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def start(self, timeout_s: float = 10.0) -> RedisProcess:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        if not wait_port(self.port, timeout_s):
            self.stop()
            raise RuntimeError(f"redis-server did not listen on {self.port}; see {self.dir / 'redis.log'}")
        self._wait_loaded(timeout_s)
        return self

    def _wait_loaded(self, timeout_s: float) -> None:
        """Listening is not serving: after a restart Redis answers LOADING while it replays
        the AOF. Return once a PING succeeds."""
        import redis

        end = time.monotonic() + timeout_s
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.BusyLoadingError, redis.ConnectionError) as exc:
                    if time.monotonic() > end:
                        raise RuntimeError(f"redis-server on {self.port} still loading after {timeout_s:.0f}s") from exc
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()


def worker_command(models: str, *, slots: int | None = None, threads: int | None = None,
                   extra: list[str] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "workers", "--models", models]
    if slots:
        cmd += ["--slots", str(slots)]
    if threads:
        cmd += ["--threads", str(threads)]
    return cmd + list(extra or [])


def spawn_worker(models: str, worker_id: str, *, env: dict | None = None, log_path: Path | None = None,
                 slots: int | None = None, threads: int | None = None,
                 extra: list[str] | None = None) -> subprocess.Popen:
    """Start ``elastiq worker`` in its own session (it survives the caller's Ctrl-C)."""
    full_env = {**os.environ, **(env or {}), "ELASTIQ_WORKER_ID": worker_id,
                "ELASTIQ_SPAWNED_AT": repr(time.time())}
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(worker_command(models, slots=slots, threads=threads, extra=extra),
                                env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        if log_path:
            out.close()


def wait_ready(redis, worker_ids, timeout_s: float = 120.0, procs=()) -> None:
    """Block until every worker id heartbeats ``ready`` (or a process has exited)."""
    wanted = set(worker_ids)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        beats = read_heartbeats(redis)
        if all(w in beats and beats[w].ready for w in wanted):
            return
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"worker process {p.pid} exited with {p.returncode} before it was ready")
        time.sleep(0.2)
    beats = read_heartbeats(redis)
    missing = sorted(w for w in wanted if w not in beats or not beats[w].ready)
    raise TimeoutError(f"workers not ready after {timeout_s}s: {missing}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def terminate(pid: int, timeout_s: float = 30.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig``, wait up to ``timeout_s``, then SIGKILL. True if it exited gracefully."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return True
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return False
