"""``elastiq up / status / submit / down`` as a user runs them, in a private ELASTIQ_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from elastiq import procs

from tests.conftest import ROOT, require

pytestmark = pytest.mark.integration


def elastiq(*args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "elastiq.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def stack_env(tmp_path):
    import shutil

    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIQ_")}
    env.update(ELASTIQ_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), ELASTIQ_WORKER_THREADS="1")
    yield env
    elastiq("down", env=env)


def listening_addresses(pid: int) -> set[str]:
    import psutil

    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet") if c.status == "LISTEN"}


def test_up_status_submit_down(stack_env):
    port = procs.free_port()
    up = elastiq("up", "--workers", "2", "--redis-port", str(port), "--json", env=stack_env)
    assert up.returncode == 0, up.stderr[-2000:]
    state = json.loads(up.stdout)
    assert state["redis_url"] == f"redis://127.0.0.1:{port}/0"
    env = {**stack_env, "ELASTIQ_REDIS_URL": state["redis_url"]}

    status = json.loads(elastiq("status", "--json", env=env).stdout)
    workers = status["workers"]
    assert len(workers) == 2 and all(w["ready"] and w["slots"] for w in workers)
    q = {x["queue"]: x for x in status["queues"]}["elastiq.minilm"]
    assert q["waiting"] == 0 and q["in_flight"] == 0 and q["workers"] == 2

    sub = elastiq("submit", "minilm", "hello world", "a second text", env=env)
    assert sub.returncode == 0, sub.stderr
    res = json.loads(sub.stdout)
    assert len(res["outputs"]) == 2 and len(res["outputs"][0]) == 384

    bad = elastiq("submit", "no-such-model", "x", env=env)
    assert bad.returncode == 1 and json.loads(bad.stderr)["error"] == "UnknownModelError"

    # Flower answers on localhost; nothing of the stack listens beyond loopback.
    assert procs.wait_port(state["flower_port"], 30)
    body = urllib.request.urlopen(f"http://127.0.0.1:{state['flower_port']}/healthcheck", timeout=10).read()
    assert body == b"OK"
    for pid in [state["redis_pid"], state["flower_pid"]] + [
            json.loads(p.read_text())["pid"] for p in (stack_env_home(stack_env) / "workers").glob("*.json")]:
        assert listening_addresses(pid) <= {"127.0.0.1"}, pid

    down = elastiq("down", env=env)
    assert down.returncode == 0
    assert not procs.pid_alive(state["redis_pid"]) and not procs.pid_alive(state["flower_pid"])
    assert elastiq("down", env=env).stdout.strip() == "nothing was running"


def stack_env_home(env):
    from pathlib import Path

    return Path(env["ELASTIQ_HOME"])
