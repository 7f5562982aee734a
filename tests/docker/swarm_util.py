"""Helpers of the swarm tests: a swarm this test creates (and always leaves), the worker
service, the autoscaler as a real ``elastiq autoscale --backend swarm`` process.

The engine may be shared by parallel test runs: every swarm test holds
``/tmp/elastiq-docker-swarm.lock`` (flock) for its whole life, and refuses to run on an
engine that is already in a swarm it did not create (it would leave someone else's).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.docker.conftest import ROOT, wait_for

LOCK_PATH = "/tmp/elastiq-docker-swarm.lock"
POOL_LABEL, GROUP_LABEL = "elastiq.pool", "elastiq.group"


def docker(*args: str, host: str | None = None, timeout: float = 120, check: bool = True,
           stdin: bytes | None = None) -> subprocess.CompletedProcess:
    cmd = ["docker", *(["-H", host] if host else []), *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


def swarm_state(host: str | None = None) -> str:
    out = docker("info", "--format", "{{.Swarm.LocalNodeState}}", host=host).stdout.decode().strip()
    return out


@contextlib.contextmanager
def swarm_lock():
    with open(LOCK_PATH, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def own_swarm(advertise: str = "127.0.0.1"):
    """``docker swarm init`` on ``advertise`` (listening there only); always leaves it."""
    with swarm_lock():
        state = swarm_state()
        if state != "inactive":
            pytest.fail(f"the engine is already in a swarm ({state}) this test did not create: "
                        "refusing to run (it would have to leave it)")
        had_gwbridge = has_network("docker_gwbridge")
        docker("swarm", "init", "--advertise-addr", advertise, "--listen-addr", f"{advertise}:2377")
        try:
            yield
        finally:
            leave_swarm(had_gwbridge)


def has_network(name: str) -> bool:
    return docker("network", "inspect", name, check=False).returncode == 0


def leave_swarm(had_gwbridge: bool) -> None:
    """Leave, and remove the docker_gwbridge network Swarm created (``swarm leave`` keeps it)."""
    docker("swarm", "leave", "--force", check=False, timeout=120)
    assert swarm_state() == "inactive", "the engine is still in a swarm after the test"
    end = time.monotonic() + 30
    while not had_gwbridge and has_network("docker_gwbridge") and time.monotonic() < end:
        if docker("network", "rm", "docker_gwbridge", check=False).returncode != 0:
            time.sleep(1)
    assert had_gwbridge or not has_network("docker_gwbridge"), "docker_gwbridge left behind"


def worker_service(client, image: str, name: str, pool: str, redis_url: str, *, replicas: int = 1,
                   slots: int = 8, extra_env: dict | None = None):
    """The worker service as the stack defines it: on-failure restarts, reservations, label."""
    import docker.types as t

    env = {"ELASTIQ_REDIS_URL": redis_url, "ELASTIQ_WORKER_MODELS": "minilm",
           "ELASTIQ_WORKER_SLOTS": str(slots), "ELASTIQ_WORKER_THREADS": "1",
           "ELASTIQ_WORKER_EXIT_WHEN_DRAINED": "1",
           # host networking: every container has the node's hostname, so the id is per task
           "ELASTIQ_WORKER_ID": "minilm-{{.Task.ID}}", **(extra_env or {})}
    return client.services.create(
        image, name=name, command=["python", "/app/compose/worker_entry.py"],
        env=[f"{k}={v}" for k, v in env.items()],
        labels={POOL_LABEL: pool, GROUP_LABEL: "minilm"},
        container_labels={POOL_LABEL: pool},
        mode=t.ServiceMode("replicated", replicas=replicas),
        restart_policy=t.RestartPolicy(condition="on-failure", delay=1_000_000_000),
        resources=t.Resources(cpu_limit=1_000_000_000, mem_limit=1500 * 2**20,
                              mem_reservation=200 * 2**20),
        networks=["host"], stop_grace_period=200 * 10**9, cap_drop=["ALL"],
    )


def service_tasks(client, service_id: str) -> list[dict]:
    return client.api.tasks(filters={"service": service_id})


def live_tasks(client, service_id: str, running_only: bool = False) -> list[dict]:
    states = ("running",) if running_only else ("new", "pending", "assigned", "accepted", "preparing",
                                                "ready", "starting", "running")
    return [t for t in service_tasks(client, service_id)
            if t["DesiredState"] == "running" and t["Status"]["State"] in states]


def replicas_of(client, service_id: str) -> int:
    return client.api.inspect_service(service_id)["Spec"]["Mode"]["Replicated"]["Replicas"]


class Autoscaler:
    """``elastiq autoscale --backend swarm`` on the host, its decisions in a timeline file."""

    def __init__(self, tmp: Path, pool: str, redis_url: str, *, max_workers: int = 3,
                 docker_host: str | None = None, window_s: float = 10.0):
        self.log_path = tmp / "autoscaler.log"
        self.timeline = tmp / "timeline.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIQ_")}
        env.update(PYTHONPATH=str(ROOT), ELASTIQ_REDIS_URL=redis_url, ELASTIQ_SWARM_POOL=pool,
                   ELASTIQ_AUTOSCALE_MIN_WORKERS="1", ELASTIQ_AUTOSCALE_MAX_WORKERS=str(max_workers),
                   ELASTIQ_AUTOSCALE_STABILISATION_MIN_S=str(window_s),
                   ELASTIQ_AUTOSCALE_COLD_START_FACTOR="1", ELASTIQ_AUTOSCALE_DRAIN_TIMEOUT_S="120")
        if docker_host:
            env["DOCKER_HOST"] = docker_host
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "elastiq.cli", "autoscale", "--backend", "swarm", "--models", "minilm",
             "--interval-s", "1", "--timeline", str(self.timeline)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rows(self) -> list[dict]:
        if not self.timeline.exists():
            return []
        return [json.loads(line) for line in self.timeline.read_text().splitlines() if line.strip()]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def job_records(redis, job_ids: list[str]) -> list[dict]:
    from elastiq import contract

    pipe = redis.pipeline()
    for jid in job_ids:
        pipe.hgetall(contract.job_key(jid))
    return [{(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in rec.items()} for rec in pipe.execute()]


wait_until = wait_for    # the docker suite's one poll-until helper, under the name the swarm tests use


class TaskWatcher:
    """Polls a service's tasks (every 0.3 s, in a thread) and keeps the last state of each:
    how a task ended is known even after Swarm's task reaper has deleted it."""

    def __init__(self, client, service_id: str):
        import threading

        self.client, self.service_id = client, service_id
        self.seen: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                for t in service_tasks(self.client, self.service_id):
                    st = t["Status"]
                    self.seen[t["ID"]] = {"state": st["State"], "desired": t["DesiredState"],
                                          "exit": (st.get("ContainerStatus") or {}).get("ExitCode"),
                                          "node": t.get("NodeID")}
            except Exception:  # noqa: BLE001 - cleanup or polling: best effort
                pass

    def ended(self) -> dict[str, dict]:
        return {k: v for k, v in self.seen.items() if v["desired"] != "running"}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def set_replicas(client, service_id: str, replicas: int) -> None:
    """Change only the replica count, sending the service's own spec back (as the backend does)."""
    svc = client.api.inspect_service(service_id)
    spec = svc["Spec"]
    client.api.update_service(service_id, svc["Version"]["Index"], task_template=spec["TaskTemplate"],
                              name=spec["Name"], labels=spec.get("Labels"),
                              mode={"Replicated": {"Replicas": replicas}}, update_config=spec.get("UpdateConfig"),
                              rollback_config=spec.get("RollbackConfig"), endpoint_spec=spec.get("EndpointSpec"))


def assert_drained_then_removed(log: str, watcher: TaskWatcher) -> None:
    """The decision log shows every removed worker drained first, and every task that ended
    exited 0 on its own (COMPLETE): none was stopped by Swarm while it ran."""
    import re

    removed = [(m.start(), m.group(1)) for m in re.finditer(r"remove the drained and exited (.+?)[);]", log)]
    assert removed, log[-3000:]
    for at, ids in removed:
        for wid in ids.split(", "):
            assert f"draining {wid}" in log[:at], f"{wid} removed before it was drained"
    ended = watcher.ended()
    assert ended, "no task was seen ending"
    stopped = {k: v for k, v in ended.items() if (v["state"], v["exit"]) != ("complete", 0)}
    assert not stopped, f"Swarm stopped a task instead of removing a finished one: {stopped}"
