"""Scenario 8 (a worker over its memory limit recycles itself without losing a job) and
scenario 10 (10,000 jobs from 4 concurrent client processes: none lost, none duplicated)."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.faults.conftest import Supervisor, executions, held, reaped, settle, tally, wait_for
from workers.state import EXIT_RECYCLE

pytestmark = pytest.mark.faults


@pytest.mark.scenario("08_memory_recycle", "Worker over ELASTIQ_WORKER_MAX_RSS_MB: drains, exits 75, replaced")
def test_worker_over_memory_limit_drains_and_exits_75(prod_env, workers, client, redis, tap, scenario):
    jobs = client.submit_many("debug", [[f"m {i}"] for i in range(24)], sleep_ms=1500)
    ids = [j.id for j in jobs]
    # RSS is far above 1 MB: the limit trips as soon as the worker is ready
    # (not waited for: it may be ready and gone before a poll sees its ready heartbeat)
    (a,) = workers.start("debug", n=1, slots=4, env={"ELASTIQ_WORKER_MAX_RSS_MB": "1"}, wait=False)
    sup = Supervisor(workers, "debug", slots=4)
    sup.start()
    try:
        t0 = time.time()
        client._wait(jobs, 120)
        code = workers.procs[a].wait(30)
        t_exit = [t for w, _, t in sup.exits if w == a]
        results = [j.result(timeout=0) for j in jobs]
    finally:
        sup.stop()
    ex = executions(redis, ids)
    on_a = [x for x in results if x.timings["worker"] == a]
    counts = tally(tap, redis, ids, "elastiq.debug")
    data = scenario.record(
        **counts, executions=sum(ex.values()),
        re_executed=sum(1 for v in ex.values() if v > 1), exit_code=code, jobs_finished_by_recycled=len(on_a),
        recovery_s_max=round(t_exit[0] - t0, 2) if t_exit else None,
        notes="recovery = jobs queued to the recycled worker's exit (it finishes its running jobs first)")
    assert code == EXIT_RECYCLE, workers.log(a)[-2000:]
    assert len(results) == len(ids) and all(v == 1 for v in ex.values()), data
    assert counts["lost"] == counts["failed"] == counts["duplicated"] == 0, data
    assert on_a, "the recycled worker finished the jobs it had started"
    assert not tap.duplicated(ids)
    assert wait_for(lambda: held(redis) == 0, 20, what="nothing left held")


CLIENT = r"""
import json, sys
from producer import Client
n, out = int(sys.argv[1]), sys.argv[2]
with Client() as c:
    jobs = c.submit_many("debug", [[f"load {sys.argv[3]} {i}"] for i in range(n)])
    c._wait(jobs, 300)
    res = [j.result(timeout=0) for j in jobs]
json.dump({"ids": [j.id for j in jobs], "outputs": [r.outputs for r in res],
           "texts": [f"load {sys.argv[3]} {i}" for i in range(n)]}, open(out, "w"))
"""


N_CLIENTS, PER_CLIENT = 4, 2500


@pytest.mark.scenario("10_load_4_clients", "10,000 jobs from 4 concurrent client processes (2 workers x 16 slots)")
def test_10000_jobs_from_4_client_processes(prod_env, workers, redis, tap, tmp_path, scenario):
    import os

    workers.start("debug", n=2, slots=16)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    clients = [subprocess.Popen([sys.executable, "-c", CLIENT, str(PER_CLIENT), str(tmp_path / f"c{k}.json"), str(k)],
                                env=env, cwd=ROOT) for k in range(N_CLIENTS)]
    try:
        codes = [p.wait(400) for p in clients]
    finally:
        for p in clients:
            if p.poll() is None:
                p.kill()
    elapsed = time.time() - t0
    ids, wrong = [], 0
    for k in range(N_CLIENTS):
        d = json.loads((tmp_path / f"c{k}.json").read_text())
        ids += d["ids"]
        wrong += sum(1 for o, t in zip(d["outputs"], d["texts"]) if o != [len(t)])
    settle(tap, redis, "elastiq.debug")      # nothing held or queued that could still publish; tap caught up
    ex = executions(redis, ids)
    published = {i: len(tap.by_id.get(i, [])) for i in ids}
    counts = tally(tap, redis, ids, "elastiq.debug")
    data = scenario.record(
        **counts, executions=sum(ex.values()), re_executed=sum(1 for v in ex.values() if v > 1), wrong_outputs=wrong,
        unpublished=sum(1 for v in published.values() if v == 0), run_s=round(elapsed, 1), recovery_s_max=None,
        runs_per_job={str(k): n for k, n in sorted(collections.Counter(ex.values()).items())},
        reaped=reaped(redis, ids))
    assert codes == [0] * N_CLIENTS
    assert len(ids) == len(set(ids)) == N_CLIENTS * PER_CLIENT and wrong == 0, data
    assert counts["lost"] == counts["failed"] == counts["duplicated"] == counts["left_in_queue"] == 0, data
    assert all(v == 1 for v in published.values()), data
    assert all(v == 1 for v in ex.values()), (data["runs_per_job"], data["reaped"])
