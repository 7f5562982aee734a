"""The process backend: local worker subprocesses, the embedded default.

Each replica is an ``elastiq worker`` process in its own session, recorded as a small JSON
file under ``$ELASTIQ_HOME/workers/``. The files, not the autoscaler's memory, are the
truth: an autoscaler that is killed and restarted lists the same workers again, and
``elastiq down`` finds them too.

A worker that exits is forgotten and its exit reported (``on_exit``: the local stack
writes it to Redis, so ``elastiq status`` shows exit codes). Exits that are not planned
(code 0, or 75 = recycled for memory) count towards a crash loop: after ``crash_limit``
of them within ``crash_window_s``, :meth:`start` refuses with BackendError for a backoff
that doubles each time (up to ``max_backoff_s``), so a worker that cannot start does not
respawn in a tight loop.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from autoscaler.backends.base import STOP_TIMEOUT_S, BackendError, Replica
from elastiq import envconfig
from elastiq.local import procs

PLANNED_EXITS = (0, 75)      # warm stop; recycled for memory (workers/state.py EXIT_RECYCLE)


def _int(env, key: str, default: int | None) -> int | None:
    raw = env.get(key)
    return default if not raw else envconfig.parse(key, raw, "int")


class ProcessBackend:
    name = "process"

    def __init__(self, home: Path, *, env: dict | None = None, slots: int | None = None,
                 threads: int | None = None, stop_timeout_s: float = STOP_TIMEOUT_S,
                 extra_args: list[str] | None = None, on_exit: Callable[[dict], None] | None = None,
                 crash_limit: int = 3, crash_window_s: float = 60.0, max_backoff_s: float = 60.0,
                 clock: Callable[[], float] = time.time):
        self.home = Path(home)
        self.dir = self.home / "workers"
        self.logs = self.home / "logs"
        self.env = dict(env or {})
        self.slots = slots
        self.threads = threads
        self.stop_timeout_s = stop_timeout_s
        self.extra_args = list(extra_args or [])
        self.on_exit = on_exit
        self.crash_limit, self.crash_window_s, self.max_backoff_s = crash_limit, crash_window_s, max_backoff_s
        self.clock = clock
        self._crashes: dict[str, list[float]] = {}     # group -> times of unplanned exits
        self._backoff: dict[str, tuple[float, float]] = {}   # group -> (until, last length)

    @classmethod
    def from_env(cls, env=None, **kw) -> ProcessBackend:
        env = os.environ if env is None else env
        return cls(Path(env.get("ELASTIQ_HOME", ".elastiq")),
                   slots=_int(env, "ELASTIQ_WORKER_SLOTS", None), threads=_int(env, "ELASTIQ_WORKER_THREADS", 1), **kw)

    def list(self, group: str) -> list[Replica]:
        replicas = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if info.get("group") != group:
                continue
            code = _reap(info["pid"])
            if not procs.pid_alive(info["pid"]) or "workers" not in procs.cmdline(info["pid"]):
                path.unlink(missing_ok=True)      # it exited: forget it, say how
                self._exited(info, code)
                continue
            replicas.append(Replica(info["worker_id"], group, str(info["pid"]), info.get("started_at")))
        return replicas

    def start(self, group: str) -> Replica:
        until, _ = self._backoff.get(group, (0.0, 0.0))
        if self.clock() < until:
            raise BackendError(f"{group}: workers keep crashing ({len(self._crashes.get(group, []))} "
                               f"unplanned exits in {self.crash_window_s:.0f}s); next start in "
                               f"{until - self.clock():.0f}s (see elastiq status and the worker logs)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        worker_id = f"{group}-{uuid.uuid4().hex[:6]}@local"
        try:
            proc = procs.spawn_worker(group, worker_id, env=self.env, slots=self.slots, threads=self.threads,
                                      log_path=self.logs / f"{worker_id.split('@')[0]}.log",
                                      extra=self.extra_args)
        except OSError as exc:
            raise BackendError(f"cannot start a worker process: {exc}") from exc
        started = time.time()
        self._file(worker_id).write_text(json.dumps(
            {"worker_id": worker_id, "group": group, "pid": proc.pid, "started_at": started}))
        return Replica(worker_id, group, str(proc.pid), started)

    def _exited(self, info: dict, code: int | None) -> None:
        group, now = info.get("group", ""), self.clock()
        planned = code in PLANNED_EXITS
        if not planned:
            recent = [t for t in self._crashes.get(group, []) if now - t < self.crash_window_s] + [now]
            self._crashes[group] = recent
            if len(recent) >= self.crash_limit:
                _, last = self._backoff.get(group, (0.0, 0.0))
                length = min(self.max_backoff_s, max(2.0, last * 2))
                self._backoff[group] = (now + length, length)
        if self.on_exit is not None:
            self.on_exit({"worker_id": info.get("worker_id"), "group": group, "code": code, "at": now,
                          "planned": planned, "uptime_s": round(now - info.get("started_at", now), 1)})

    def stop(self, replica: Replica) -> None:
        """Warm shutdown (SIGTERM): running jobs finish; SIGKILL only past the timeout."""
        procs.terminate(int(replica.handle), timeout_s=self.stop_timeout_s)
        self._file(replica.worker_id).unlink(missing_ok=True)

    def stop_all(self) -> int:
        n = 0
        for path in self.dir.glob("*.json"):
            info = json.loads(path.read_text())
            if procs.pid_alive(info["pid"]) and "workers" in procs.cmdline(info["pid"]):
                procs.terminate(info["pid"], timeout_s=self.stop_timeout_s)
                n += 1
            path.unlink(missing_ok=True)
        return n

    def _file(self, worker_id: str) -> Path:
        return self.dir / (worker_id.replace("@", "_") + ".json")


def _reap(pid: int) -> int | None:
    """Collect an exited worker we started (no zombie); its exit code (-N: killed by signal N),
    or None if it still runs or is not our child (we were restarted)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done else None
