"""``elastiq up / status / submit / down`` as a user runs them, in a private ELASTIQ_HOME."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest

from elastiq.local import procs
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
    assert status["redis"]["used_mb"] > 0 and status["redis"]["result_ttl_s"] == 3600
    # a Redis that keeps answers an hour is capped (half the host by default), not left to the OOM killer
    assert status["redis"]["maxmemory_mb"] == procs.redis_maxmemory_mb(stack_env)
    assert status["redis"]["near_full"] is False

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


def ready_workers(env) -> list[dict]:
    out = elastiq("status", "--json", env=env)
    assert out.returncode == 0, out.stderr[-1000:]
    return [w for w in json.loads(out.stdout)["workers"] if w["ready"]]


def wait_until(pred, timeout_s: float, what: str):
    import time

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@pytest.mark.slow
def test_up_replaces_a_killed_worker_and_status_shows_the_exit(stack_env, models_file):
    import signal

    env = {**stack_env, "ELASTIQ_MODELS": str(models_file)}
    up = elastiq("up", "--workers", "2", "--models", "debug", "--no-flower", "--json", env=env)
    assert up.returncode == 0, up.stderr[-2000:]
    env["ELASTIQ_REDIS_URL"] = json.loads(up.stdout)["redis_url"]
    victim = ready_workers(env)[0]
    pid = json.loads(elastiq("status", "--json", env=env).stdout)
    hb_pid = next(w for w in pid["workers"] if w["worker_id"] == victim["worker_id"])
    status = json.loads(elastiq("status", "--json", env=env).stdout)
    assert status["supervisor"]["debug"]["running"] == 2
    import psutil

    target = next(p for p in psutil.process_iter(["cmdline", "environ"])
                  if (p.info["environ"] or {}).get("ELASTIQ_WORKER_ID") == hb_pid["worker_id"])
    target.send_signal(signal.SIGKILL)
    wait_until(lambda: len([w for w in ready_workers(env) if w["worker_id"] != victim["worker_id"]]) == 2,
               60, "a replacement worker")
    exits = json.loads(elastiq("status", "--json", env=env).stdout)["exits"]
    assert [e for e in exits["latest"] if e["worker_id"] == victim["worker_id"] and e["code"] == -9
            and not e["planned"]], exits
    assert exits["unplanned_last_minute"] >= 1
    text = elastiq("status", env=env).stdout
    assert "CRASH" in text and "code -9" in text
    assert re.search(r"redis: \d+ MB used of \d+; answers kept 3600 s", text), text     # maxmemory: half the host
    sub = elastiq("submit", "debug", "still serving", env=env)
    assert sub.returncode == 0 and json.loads(sub.stdout)["outputs"] == [13]


@pytest.mark.slow
def test_up_with_autoscale_returns_once_its_workers_are_ready(stack_env, models_file):
    env = {**stack_env, "ELASTIQ_MODELS": str(models_file)}
    up = elastiq("up", "--workers", "2", "--models", "debug", "--autoscale", "--no-flower", "--json",
                 env=env, timeout=120)
    assert up.returncode == 0, up.stderr[-2000:]
    env["ELASTIQ_REDIS_URL"] = json.loads(up.stdout)["redis_url"]
    assert len(ready_workers(env)) == 2          # both loaded; none drained while loading
