"""Scenarios 2 and 5 with the process backend: scale-in during load interrupts nothing;
an autoscaler SIGKILLed and restarted leaves the workers serving and does not scale up
twice (it resumes from what it observes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autoscaler.backends.process import ProcessBackend
from autoscaler.controller import Controller
from autoscaler.policy import PolicyConfig
from elastiq.errors import ElastiqError, JobTimeoutError
from elastiq.local import procs
from tests.conftest import ROOT
from tests.faults.conftest import executions, held, tally, wait_for

pytestmark = pytest.mark.faults


def worker_env(redis_url: str) -> dict:
    keep = {k: v for k, v in os.environ.items() if k.startswith("ELASTIQ_")}
    return {**keep, "ELASTIQ_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}


def outcome(job, timeout_s):
    try:
        return job.result(timeout=timeout_s)
    except ElastiqError as exc:
        return exc


@pytest.mark.scenario("02_scale_in_during_load", "Autoscaler scale-in (drain, then warm stop) while jobs keep arriving")
def test_scale_in_during_load_interrupts_nothing(prod_env, redis_url, client, redis, tap, tmp_path, scenario):
    backend = ProcessBackend(tmp_path / "home", env=worker_env(redis_url), slots=4, threads=1, stop_timeout_s=30)
    config = PolicyConfig(min_workers=1, max_workers=3, target_per_worker=4, stabilisation_min_s=2.0,
                          cold_start_factor=0.5)
    rows: list[dict] = []
    ctl = Controller(redis=redis, backend=backend, groups=["debug"], config=config, record=rows.append)
    stop = threading.Event()
    loop = threading.Thread(target=ctl.run, kwargs={"interval_s": 0.5, "should_stop": stop.is_set})
    jobs = []
    try:
        ctl.reconcile_once(time.time())
        loop.start()
        jobs += client.submit_many("debug", [[f"burst {i}"] for i in range(300)], sleep_ms=300)
        wait_for(lambda: any((r.get("current") or 0) >= 2 for r in rows), 60, what="scale-up")
        # then a trickle (one 0.4 s job every 0.5 s) while the pool shrinks: a worker picked
        # as idle may take a job before its drain lands, which must then finish or go back
        t_end = time.time() + 25
        while time.time() < t_end:
            jobs += client.submit_many("debug", [["trickle"]], sleep_ms=400)
            time.sleep(0.5)
        outcomes = [outcome(j, 120) for j in jobs]
        wait_for(lambda: not ctl.state["debug"].draining, 60, what="drains to finish")
    finally:
        stop.set()
        if loop.is_alive():
            loop.join(30)
        backend.stop_all()
    ids = [j.id for j in jobs]
    ex = executions(redis, ids)
    failed = [o for o in outcomes if isinstance(o, Exception)]
    downs = [r for r in rows if r["action"].startswith("down")]
    peak = max((r["current"] or 0) for r in rows)
    counts = tally(tap, redis, ids, "elastiq.debug")
    data = scenario.record(
        **counts, client_errors=len(failed), client_timeouts=sum(1 for o in failed if isinstance(o, JobTimeoutError)),
        executions=sum(ex.values()),
        re_executed=sum(1 for v in ex.values() if v > 1), interrupted=sum(1 for v in ex.values() if v > 1) + len(failed),
        peak_workers=peak, scale_in_actions=len(downs), recovery_s_max=None,
        notes="interrupted = a job run twice or failed; drained workers stop only at busy == 0")
    assert peak >= 2 and downs, data
    assert not failed, failed[:3]
    assert counts["lost"] == counts["failed"] == counts["duplicated"] == counts["left_in_queue"] == 0, data
    assert all(v == 1 for v in ex.values()), data
    assert not tap.duplicated(ids)
    assert held(redis) == 0


def live_workers(home: Path) -> set[str]:
    out = set()
    for f in (home / "workers").glob("*.json"):
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if procs.pid_alive(info["pid"]):
            out.add(info["worker_id"])
    return out


@pytest.mark.scenario("05_autoscaler_killed", "Autoscaler SIGKILLed mid scale-up and restarted 4 s later (max 3 workers)")
def test_autoscaler_killed_and_restarted(prod_env, redis_url, client, redis, tap, tmp_path, scenario):
    home = tmp_path / "home"
    env = {**os.environ, **worker_env(redis_url), "ELASTIQ_HOME": str(home), "ELASTIQ_WORKER_SLOTS": "4",
           "ELASTIQ_WORKER_THREADS": "1", "ELASTIQ_AUTOSCALE_MIN_WORKERS": "1",
           "ELASTIQ_AUTOSCALE_MAX_WORKERS": "3", "ELASTIQ_AUTOSCALE_TARGET_PER_WORKER": "4",
           "ELASTIQ_AUTOSCALE_STABILISATION_MIN_S": "120"}
    cmd = [sys.executable, "-m", "elastiq.cli", "autoscale", "--backend", "process", "--models", "debug",
           "--interval-s", "0.5"]

    def spawn(n):
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=open(tmp_path / f"auto{n}.log", "w"),
                                stderr=subprocess.STDOUT, start_new_session=True)

    seen: set[str] = set()
    peak = [0]
    halt = threading.Event()

    def sample():
        while not halt.wait(0.1):
            live = live_workers(home)
            seen.update(live)
            peak[0] = max(peak[0], len(live))

    sampler = threading.Thread(target=sample, daemon=True)
    auto = spawn(1)
    auto2 = None
    try:
        sampler.start()
        wait_for(lambda: len(live_workers(home)) >= 1, 60, what="the first worker")
        jobs = client.submit_many("debug", [[f"a {i}"] for i in range(400)], sleep_ms=300)
        ids = [j.id for j in jobs]
        wait_for(lambda: len(live_workers(home)) >= 2, 60, what="a scale-up")
        os.killpg(auto.pid, signal.SIGKILL)
        auto.wait(10)
        t_kill = time.time()
        done_at_kill = int(redis.hget("elastiq:stats:elastiq.debug", "started") or 0)
        time.sleep(4)          # the scenario: the autoscaler stays down 4 s
        done_while_down = int(redis.hget("elastiq:stats:elastiq.debug", "started") or 0) - done_at_kill
        workers_at_restart = live_workers(home)
        auto2 = spawn(2)
        t_restart = time.time()
        outcomes = [outcome(j, 180) for j in jobs]
        time.sleep(2)          # a window, not a sync: the sampler watches the restarted autoscaler 2 s more
    finally:
        halt.set()
        for p in (auto, auto2):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        ProcessBackend(home, stop_timeout_s=20).stop_all()
    ex = executions(redis, ids)
    failed = [o for o in outcomes if isinstance(o, Exception)]
    counts = tally(tap, redis, ids, "elastiq.debug")
    data = scenario.record(
        **counts, client_errors=len(failed), client_timeouts=sum(1 for o in failed if isinstance(o, JobTimeoutError)),
        executions=sum(ex.values()),
        re_executed=sum(1 for v in ex.values() if v > 1), jobs_started_while_autoscaler_down=done_while_down,
        workers_at_restart=len(workers_at_restart), workers_ever_started=len(seen), peak_workers=peak[0],
        recovery_s_max=round(t_restart - t_kill, 1),
        notes="recovery = autoscaler down time; the workers kept serving; no worker started twice")
    assert done_while_down > 0, "the workers kept serving while the autoscaler was down"
    assert not failed and all(v == 1 for v in ex.values()), data
    assert counts["lost"] == counts["failed"] == counts["duplicated"] == 0, data
    assert peak[0] <= 3 and len(seen) <= 3, data      # no double scale-up past max_workers
    assert not tap.duplicated(ids)
