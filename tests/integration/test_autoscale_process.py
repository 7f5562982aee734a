"""The autoscaler with real Redis and the process backend: a burst scales 1 -> N -> 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from autoscaler.backends.process import ProcessBackend
from autoscaler.controller import Controller
from autoscaler.policy import PolicyConfig
from elastiq.jobrecord import read_record
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def backend(tmp_path, redis_url, models_env):
    env = {"ELASTIQ_REDIS_URL": redis_url, "ELASTIQ_MODELS": str(models_env),
           "PYTHONPATH": str(ROOT)}
    b = ProcessBackend(tmp_path / "home", env=env, slots=4, threads=1, stop_timeout_s=30)
    yield b
    b.stop_all()


def test_burst_scales_up_then_drains_back_to_min_without_losing_a_job(backend, client, redis):
    config = PolicyConfig(min_workers=1, max_workers=3, target_per_worker=4,
                          stabilisation_min_s=3.0, cold_start_factor=1.0)
    rows: list[dict] = []
    ctl = Controller(redis=redis, backend=backend, groups=["debug"], config=config, record=rows.append)
    ctl.reconcile_once(time.time())                    # from zero to the minimum
    assert len(backend.list("debug")) == 1
    stop = threading.Event()
    loop = threading.Thread(target=ctl.run, kwargs={"interval_s": 0.5, "should_stop": stop.is_set})
    loop.start()
    try:
        jobs = client.submit_many("debug", [[f"job {i}"] for i in range(300)], sleep_ms=150)
        results = [j.result(timeout=120) for j in jobs]
        deadline = time.time() + 90
        while time.time() < deadline:
            if rows and rows[-1]["current"] == 1 and not ctl.state["debug"].draining:
                break
            time.sleep(0.5)
    finally:
        stop.set()
        loop.join(10)

    assert len(results) == 300 and len({r.job_id for r in results}) == 300
    deliveries = [read_record(redis, r.job_id).deliveries for r in results]
    assert deliveries == [1] * 300                     # 0 lost, none run twice
    peak = max(r["current"] for r in rows if r["current"] is not None)
    assert peak >= 2, "the burst should have added workers"
    assert rows[-1]["current"] == 1 and len(backend.list("debug")) == 1
    served_by = {r.timings["worker"] for r in results}
    assert len(served_by) >= 2
    # One scale-down sequence per drain: once the pool shrinks it never grows again.
    actions = [r["action"].split()[0] for r in rows if r["action"].startswith(("up", "down"))]
    first_down = actions.index("down")
    moves = [(round(r["t"] - rows[0]["t"], 1), r["current"], r["desired"], r["action"], r["reason"])
             for r in rows if r["action"] != "hold"]
    assert "up" not in actions[first_down:], moves


def test_once_dry_run_json_prints_one_decision_per_queue(tmp_path, redis_url, models_env, client):
    client.submit_many("debug", [["x"]] * 40)
    env = {**os.environ, "ELASTIQ_HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "ELASTIQ_AUTOSCALE_MAX_WORKERS": "4"}
    out = subprocess.run([sys.executable, "-m", "elastiq.cli", "autoscale", "--models", "debug,minilm",
                          "--once", "--dry-run", "--json"], env=env, capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["queue"] for r in rows] == ["elastiq.debug", "elastiq.minilm"]
    assert set(rows[0]) == {"queue", "current", "desired", "reason", "waiting", "in_flight", "oldest_age_s"}
    assert rows[0]["waiting"] == 40 and rows[0]["current"] == 0 and rows[0]["desired"] >= 1
    assert rows[0]["reason"]
    assert not list((tmp_path / "workers").glob("*.json"))     # dry run started nothing


def test_two_starting_workers_are_not_drained_while_loading_nor_inside_their_window(backend, redis):
    """`elastiq up --workers 2 --autoscale`: the autoscaler's first ticks see two loading workers
    and no demand. It must not drain either until both are ready and their window has passed."""
    config = PolicyConfig(min_workers=1, max_workers=3, stabilisation_min_s=4.0, cold_start_factor=0.0)
    started = [backend.start("debug"), backend.start("debug")]
    ctl = Controller(redis=redis, backend=backend, groups=["debug"], config=config)
    rows, deadline = [], time.time() + 60
    while time.time() < deadline:
        rows.append(ctl.reconcile_once(time.time())[0])
        if rows[-1]["action"].startswith("down"):
            break
        time.sleep(0.2)
    first_down = rows[-1]
    assert first_down["action"] == "down -1", rows[-5:]
    loading = [r for r in rows if "still loading" in r["reason"]]
    assert loading and all(r["desired"] == 2 for r in loading)      # the first ticks: held, not drained
    youngest = max(r.started_at for r in started)
    assert first_down["t"] - youngest >= 4.0                          # not inside the window from its start
    beats = ctl.signals.heartbeats()
    assert all(beats[r.worker_id].ready or beats[r.worker_id].draining for r in started)
