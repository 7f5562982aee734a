"""The local stack behind ``elastiq up``/``down``: redis-server, workers, Flower, autoscaler
and (``--gateway``) the HTTP gateway.

Everything runs in the background on 127.0.0.1, with its files under ``$ELASTIQ_HOME``
(default ``./.elastiq``): ``stack.json`` records what was started (pids, ports), so
``elastiq down`` stops exactly that and nothing else.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from elastiq import contract
from elastiq.errors import ConfigError
from elastiq.heartbeats import read_heartbeats
from elastiq.local import procs
from elastiq.redisconn import redis_client
from elastiq.settings import Settings


@dataclass
class StackState:
    redis_url: str
    redis_pid: int
    redis_port: int
    models: list[str]
    flower_pid: int | None = None
    flower_port: int | None = None
    autoscaler_pid: int | None = None
    supervisor_pid: int | None = None
    metrics_port: int | None = None
    timeline: str | None = None
    gateway_pid: int | None = None
    gateway_port: int | None = None
    gateway_token_file: str | None = None
    started_at: float = field(default_factory=time.time)


def home_dir() -> Path:
    return Path(os.environ.get("ELASTIQ_HOME", ".elastiq")).resolve()


def state_path(home: Path) -> Path:
    return home / "stack.json"


def load_state(home: Path) -> StackState | None:
    try:
        return StackState(**json.loads(state_path(home).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def is_running(state: StackState) -> bool:
    return procs.pid_alive(state.redis_pid) and "redis-server" in procs.cmdline(state.redis_pid)


def _spawn(args: list[str], log: Path, env: dict) -> int:
    out = open(log, "ab")
    try:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True).pid
    finally:
        out.close()


def _start_gateway(home: Path, env: dict, port: int | None) -> tuple[int, int, str | None]:
    """``elastiq gateway`` on 127.0.0.1; a random token in ``home/gateway.token`` (0600)
    unless ELASTIQ_GATEWAY_TOKENS(_FILE) is set. Returns (port, pid, token file)."""
    port = port or procs.free_port()
    token_file = None
    if not (env.get("ELASTIQ_GATEWAY_TOKENS") or env.get("ELASTIQ_GATEWAY_TOKENS_FILE")):
        token_file = home / "gateway.token"
        if not token_file.exists():
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        env = {**env, "ELASTIQ_GATEWAY_TOKENS_FILE": str(token_file)}
    pid = _spawn([sys.executable, "-m", "elastiq.cli", "gateway", "--host", "127.0.0.1", "--port", str(port)],
                 home / "logs" / "gateway.log", env)
    return port, pid, str(token_file) if token_file else None


def _start_pool(state: StackState, home: Path, env: dict, workers: int, autoscale: bool,
                metrics_port: int | None) -> None:
    """Workers are children of a process that stays: it restarts the ones that die (with a
    backoff when they keep crashing) and reports their exit codes to `elastiq status`."""
    cli = [sys.executable, "-m", "elastiq.cli"]
    models = ",".join(state.models)
    if autoscale:
        state.metrics_port = metrics_port or procs.free_port()
        state.timeline = str(home / "timeline.jsonl")
        state.autoscaler_pid = _spawn(
            cli + ["autoscale", "--backend", "process", "--models", models, "--start-workers", str(workers),
                   "--timeline", state.timeline, "--metrics-port", str(state.metrics_port)],
            home / "logs" / "autoscaler.log", env)
    else:
        state.supervisor_pid = _spawn(cli + ["supervise", "--models", models, "--workers", str(workers)],
                                      home / "logs" / "supervisor.log", env)


def up(home: Path, *, workers: int = 1, models: list[str] | None = None, redis_port: int | None = None,
       flower: bool = True, flower_port: int | None = None, autoscale: bool = False,
       metrics_port: int | None = None, ready_timeout_s: float = 180.0, progress=print,
       gateway: bool = False, gateway_port: int | None = None) -> StackState:
    models = models or ["minilm"]
    existing = load_state(home)
    if existing and is_running(existing):
        return existing
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    if redis_port is None:
        redis_port = 6379 if not procs.wait_port(6379, 0.05) else procs.free_port()
    redis = procs.RedisProcess(redis_port, home / "redis").start()
    state = StackState(redis.url, redis.proc.pid, redis_port, models)
    state_path(home).write_text(json.dumps(asdict(state), indent=2))
    cap = f"maxmemory {redis.maxmemory_mb} MB" if redis.maxmemory_mb else "no maxmemory"
    progress(f"redis-server on 127.0.0.1:{redis_port} (AOF on, {cap}, data in {home / 'redis'})")

    env = {**os.environ, "ELASTIQ_REDIS_URL": state.redis_url, "ELASTIQ_HOME": str(home),
           "ELASTIQ_WORKER_THREADS": os.environ.get("ELASTIQ_WORKER_THREADS") or "1"}
    os.environ["ELASTIQ_REDIS_URL"] = state.redis_url
    if flower:
        state.flower_port = flower_port or procs.free_port()
        state.flower_pid = _spawn([sys.executable, "-m", "celery", "-A", "elastiq.local.flower_app", "flower",
                                   "--address=127.0.0.1", f"--port={state.flower_port}"],
                                  home / "logs" / "flower.log", env)
    if gateway:
        state.gateway_port, state.gateway_pid, state.gateway_token_file = _start_gateway(home, env, gateway_port)
    _start_pool(state, home, env, workers, autoscale, metrics_port)
    state_path(home).write_text(json.dumps(asdict(state), indent=2))
    progress(f"waiting for {workers} worker(s) per model to load ...")
    r = redis_client(Settings(redis_url=state.redis_url))
    try:
        wait_ready_count(r, models, workers, ready_timeout_s,
                         parent=state.autoscaler_pid or state.supervisor_pid)
    finally:
        r.close()
    if gateway and not procs.wait_port(state.gateway_port, 60):
        raise ConfigError(f"the gateway did not start; see {home / 'logs' / 'gateway.log'}")
    return state


def wait_ready_count(redis, models: list[str], n: int, timeout_s: float, parent: int | None = None) -> None:
    """Block until ``n`` workers per model heartbeat ``ready`` (or their parent has died)."""
    end = time.monotonic() + timeout_s
    while True:
        beats = read_heartbeats(redis)
        have = {m: sum(1 for b in beats.values() if b.ready and b.serves(contract.queue_for(m)))
                for m in models}
        if all(v >= n for v in have.values()):
            return
        if parent and not procs.pid_alive(parent):
            raise RuntimeError(f"the process starting the workers (pid {parent}) has exited; see its log")
        if time.monotonic() > end:
            raise TimeoutError(f"after {timeout_s:.0f}s, ready workers per model: {have} (wanted {n})")
        time.sleep(0.2)


def down(home: Path, progress=print) -> int:
    """Stop what ``up`` started (autoscaler first, then workers, Flower, Redis)."""
    state = load_state(home)
    stopped = 0
    for pid, word in ((state and state.autoscaler_pid, "autoscale"), (state and state.supervisor_pid, "supervise")):
        if pid and word in procs.cmdline(pid):
            procs.terminate(pid, 30)       # first: nothing restarts the workers stopped below
            stopped += 1
    if state and state.gateway_pid and "gateway" in procs.cmdline(state.gateway_pid):
        procs.terminate(state.gateway_pid, 15)
        stopped += 1
    from autoscaler.backends.process import ProcessBackend

    n = ProcessBackend(home).stop_all()
    if n:
        progress(f"stopped {n} worker(s)")
    stopped += n
    if state and state.flower_pid and "flower" in procs.cmdline(state.flower_pid):
        procs.terminate(state.flower_pid, 10)
        stopped += 1
    if state and is_running(state):
        procs.terminate(state.redis_pid, 30)
        progress(f"stopped redis-server on port {state.redis_port}")
        stopped += 1
    state_path(home).unlink(missing_ok=True)
    return stopped
