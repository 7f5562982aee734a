"""``elastiq autoscale --backend none``: the real CLI process decides from a real backlog in
a real Redis and serves the desired count over HTTP in the shape KEDA's metrics-api scaler
reads; the count follows the backlog and the live workers' heartbeats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from autoscaler.policy import PolicyConfig
from elastiq import contract
from elastiq.local import procs
from tests.conftest import ROOT, wait_until


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


def _wait(url: str, pred, timeout_s: float = 30.0) -> dict:
    end = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < end:
        status, body = _get(url)
        last = (status, body)
        if status == 200 and pred(body):
            return body
        time.sleep(0.3)
    raise AssertionError(f"{url}: last answer {last}")


@pytest.fixture
def autoscaler_none(redis_url, tmp_path):
    port = procs.free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ELASTIQ_REDIS_URL": redis_url,
           "ELASTIQ_AUTOSCALE_MIN_WORKERS": "1", "ELASTIQ_AUTOSCALE_MAX_WORKERS": "6"}
    log = open(tmp_path / "autoscaler.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "elastiq.cli", "autoscale", "--backend", "none",
                             "--models", "minilm", "--interval-s", "0.5", "--desired-port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_desired_follows_a_real_backlog_over_http(autoscaler_none, client, redis):
    base = autoscaler_none
    idle = _wait(f"{base}/desired/minilm", lambda b: b.get("current") == 0)
    assert idle["desired"] == 1 and idle["queue"] == "elastiq.minilm"        # the minimum, no backlog
    assert _get(f"{base}/desired/nosuchmodel")[0] == 404
    assert _get(f"{base}/desired/elastiq.minilm")[1]["desired"] == 1          # by queue name too

    # 40 waiting jobs, no worker: the backlog term, ceil(40 / 16) = 3 (the policy's own config)
    client.submit_many("minilm", [[f"sentence {i}"] for i in range(40)])
    per = PolicyConfig().target_per_worker
    want = -(-40 // int(per))
    body = _wait(f"{base}/desired/minilm", lambda b: b.get("waiting") == 40)
    assert body["desired"] == want == 3, body
    assert body["current"] == 0 and body["age_s"] < 5

    # a live worker heartbeating on the queue is the current count (the pods KEDA runs)
    hb = {"worker_id": "pod-a", "queues": [contract.queue_for("minilm")], "ready": True, "busy": 0,
          "slots": 16, "started_at": time.time() - 60, "draining": False}
    redis.set(contract.heartbeat_key("pod-a"), json.dumps(hb), ex=30)
    body = _wait(f"{base}/desired/minilm", lambda b: b.get("current") == 1)
    assert body["desired"] >= 3

    # all of them in one answer, and the readiness path
    assert "elastiq.minilm" in _get(f"{base}/desired")[1]["queues"]
    assert _get(f"{base}/healthz") == (200, {"ok": True})


def test_stale_decision_is_503():
    from autoscaler.desired import DesiredBoard

    now = [1000.0]
    board = DesiredBoard(stale_s=30, clock=lambda: now[0])
    board.update({"queue": "elastiq.minilm", "desired": 2, "current": 1, "t": 1000.0})
    board.update({"queue": "elastiq.minilm", "desired": None, "t": 1010.0})    # a failed tick: kept
    assert board.answer("minilm")[0] == 200 and board.answer("minilm")[1]["desired"] == 2
    now[0] = 1031.0
    status, body = board.answer("minilm")
    assert status == 503 and body["desired"] == 2 and "old" in body["error"]


def test_elastiq_drain_waits_for_the_worker(redis, redis_url):
    """The preStop hook: asks the worker to drain, returns once it is drained or gone."""
    import threading

    from autoscaler import drain_cli

    key = contract.heartbeat_key("pod-b")
    redis.set(key, json.dumps({"worker_id": "pod-b", "busy": 2, "draining": False}), ex=30)
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(drain_cli.main(["pod-b", "--wait-s", "20"])))
    t.start()
    wait_until(lambda: redis.exists(contract.drain_key("pod-b")), 10, "the drain asked")
    t.join(1.0)                       # a negative check: busy 2, it must still be waiting 1 s on
    assert not out and redis.exists(contract.drain_key("pod-b"))       # asked, and still waiting
    redis.set(key, json.dumps({"worker_id": "pod-b", "busy": 0, "draining": True}), ex=30)
    t.join(10)
    assert out == [0]
    assert drain_cli.main(["gone-worker", "--wait-s", "5"]) == 0               # no heartbeat: gone
    redis.set(contract.heartbeat_key("stuck"), json.dumps({"worker_id": "stuck", "busy": 1, "draining": True}), ex=30)
    assert drain_cli.main(["stuck", "--wait-s", "1"]) == 1                   # still running a job
