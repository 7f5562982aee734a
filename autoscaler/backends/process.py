"""The process backend: local worker subprocesses, the embedded default.

Each replica is an ``elastiq worker`` process in its own session, recorded as a small JSON
file under ``$ELASTIQ_HOME/workers/``. The files, not the autoscaler's memory, are the
truth: an autoscaler that is killed and restarted lists the same workers again, and
``elastiq down`` finds them too.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from autoscaler.backends.base import BackendError, Replica
from elastiq import procs


class ProcessBackend:
    name = "process"

    def __init__(self, home: Path, *, env: dict | None = None, slots: int | None = None,
                 threads: int | None = None, stop_timeout_s: float = 200.0,
                 extra_args: list[str] | None = None):
        self.home = Path(home)
        self.dir = self.home / "workers"
        self.logs = self.home / "logs"
        self.env = dict(env or {})
        self.slots = slots
        self.threads = threads
        self.stop_timeout_s = stop_timeout_s
        self.extra_args = list(extra_args or [])

    @classmethod
    def from_env(cls, env=None) -> "ProcessBackend":
        env = os.environ if env is None else env
        return cls(Path(env.get("ELASTIQ_HOME", ".elastiq")),
                   slots=int(env["ELASTIQ_WORKER_SLOTS"]) if env.get("ELASTIQ_WORKER_SLOTS") else None,
                   threads=int(env.get("ELASTIQ_WORKER_THREADS") or 1))

    def list(self, group: str) -> list[Replica]:
        replicas = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if info.get("group") != group:
                continue
            _reap(info["pid"])
            if not procs.pid_alive(info["pid"]) or "workers" not in procs.cmdline(info["pid"]):
                path.unlink(missing_ok=True)      # it exited: forget it
                continue
            replicas.append(Replica(info["worker_id"], group, str(info["pid"]), info.get("started_at")))
        return replicas

    def start(self, group: str) -> Replica:
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


def _reap(pid: int) -> None:
    """Collect an exited worker we started, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:   # not our child (we were restarted): nothing to collect
        pass
