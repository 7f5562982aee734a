"""A neighbour that keeps every core busy: the autoscaler adds no worker that would only
share busy cores (the host's idle CPU, measured each tick, caps the pool), says so in the
decision, and adds it as soon as the cores are free again. Real autoscaler, real process
backend, real workers, real CPU hogs; production policy defaults apart from the pool bounds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from autoscaler.backends.process import ProcessBackend
from autoscaler.controller import Controller
from autoscaler.hoststats import MIN_INTERVAL_S
from autoscaler.policy import PolicyConfig
from tests.conftest import ROOT
from tests.faults.conftest import wait_for

pytestmark = pytest.mark.faults

HOG = "while True: pass"
N = 400          # 400 x 0.2 s over 4 slots: ~20 s of work for one worker


def worker_env(redis_url: str) -> dict:
    keep = {k: v for k, v in os.environ.items() if k.startswith("ELASTIQ_")}
    return {**keep, "ELASTIQ_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}


def test_no_worker_added_onto_busy_cores_then_added_when_they_free(prod_env, redis_url, client, redis, tmp_path):
    cpus = os.cpu_count() or 1
    backend = ProcessBackend(tmp_path / "home", env=worker_env(redis_url), slots=4, threads=1, stop_timeout_s=30)
    config = PolicyConfig(min_workers=1, max_workers=2, target_per_worker=4)
    rows: list[dict] = []
    ctl = Controller(redis=redis, backend=backend, groups=["debug"], config=config, record=rows.append)
    stop = threading.Event()
    loop = threading.Thread(target=ctl.run, kwargs={"interval_s": 1.0, "should_stop": stop.is_set})
    hogs = []
    try:
        ctl.reconcile_once(time.time())
        wait_for(lambda: _ready(redis) == 1, 60, what="the first worker ready")
        # one more hog than cores: the scheduler leaves no idle CPU
        hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(cpus + 1)]
        # two ticks with no backlog yet, > MIN_INTERVAL_S apart: the idle CPU the policy sees
        # next is measured over hog time only (a duration, not synchronisation)
        for _ in range(2):
            time.sleep(MIN_INTERVAL_S + 0.1)
            ctl.reconcile_once(time.time())
        jobs = client.submit_many("debug", [[f"busy {i}"] for i in range(N)], sleep_ms=200)
        loop.start()
        try:
            wait_for(lambda: sum(1 for r in rows if "idle" in (r.get("reason") or "")) >= 5, 60,
                     what="five decisions capped by the host's idle CPU")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; rows {[(r['current'], r['desired'], r['reason']) for r in rows]}") from None
        capped = [r for r in rows if "idle" in (r.get("reason") or "")]
        assert all(r["desired"] == 1 and r["capacity_limited"] for r in capped), capped[-3:]
        assert len(backend.list("debug")) == 1, "no worker was added onto busy cores"
        for h in hogs:
            h.kill()
        wait_for(lambda: len(backend.list("debug")) == 2, 30, what="a second worker once the cores are free")
        outputs = [j.result(timeout=120).outputs for j in jobs]
    finally:
        for h in hogs:
            h.kill()
        stop.set()
        if loop.is_alive():
            loop.join(30)
        backend.stop_all()
    assert outputs == [[len(f"busy {i}")] for i in range(N)]


def _ready(redis) -> int:
    from elastiq.heartbeats import read_heartbeats

    return sum(1 for b in read_heartbeats(redis).values() if b.ready)
