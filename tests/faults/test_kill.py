"""Scenarios 1 and 3: a worker SIGKILLed mid-job (10 times in a 2,000-job run), and a
worker SIGTERMed with running jobs (warm shutdown)."""

from __future__ import annotations

import signal
import statistics
import time

import pytest

from elastiq import procs
from elastiq.errors import ElastiqError
from tests.faults.conftest import Supervisor, executions, records, republished, tally, unacked, wait_for

pytestmark = pytest.mark.faults


def collect(client, jobs, timeout_s):
    """Wait for every job; return (results by id, errors by id)."""
    client._wait(jobs, timeout_s)
    ok, bad = {}, {}
    for j in jobs:
        try:
            ok[j.id] = j.result(timeout=0)
        except ElastiqError as exc:
            bad[j.id] = exc
    return ok, bad


@pytest.mark.scenario("01_sigkill_busy_worker", "SIGKILL a busy worker mid-job, 10x in a 2,000-job run (3 workers)")
def test_sigkill_busy_worker_ten_times_in_2000_jobs(fast_env, workers, client, redis, tap, scenario):
    n_jobs, n_kills = 2000, 10
    workers.start("debug", n=3, slots=8)
    sup = Supervisor(workers, "debug", slots=8)
    sup.start()
    kills: dict[str, float] = {}
    t0 = time.time()
    try:
        jobs = client.submit_many("debug", [[f"job {i}"] for i in range(n_jobs)], sleep_ms=250)
        ids = [j.id for j in jobs]
        while len(kills) < n_kills:
            # the busiest live worker, only when it really holds jobs
            beats = procs.read_heartbeats(redis)
            live = [(b.get("busy", 0), w) for w, b in beats.items()
                    if w in workers.procs and workers.procs[w].poll() is None and w not in kills]
            busy = [x for x in live if x[0] >= 2]
            if not busy:
                if time.time() - t0 > 120:
                    break
                time.sleep(0.1)
                continue
            _, victim = max(busy)
            workers.signal(victim, signal.SIGKILL)
            kills[victim] = time.time()
            time.sleep(1.5)
        ok, bad = collect(client, jobs, timeout_s=180)
        done_at = time.time()
    finally:
        sup.stop()
    time.sleep(1.0)      # let any late duplicate publish arrive
    ex = executions(redis, ids)
    recs = records(redis, ids)
    re_executed = [i for i in ids if ex[i] > 1]
    recovery = []
    for i in re_executed:
        first = recs[i].get("first_worker")
        if first in kills and i in ok:
            recovery.append(ok[i].timings["finished_at"] - kills[first])
    published = {i: len(tap.by_id.get(i, [])) for i in ids}
    duplicated = [i for i in ids if published[i] > 1]
    lost = [i for i in ids if i not in ok and i not in bad]
    counts = tally(tap, redis, ids, "elastiq.debug")
    data = scenario.record(
        **counts, client_results=len(ok), client_errors=len(bad),
        executions=sum(ex.values()), re_executed=len(re_executed), kills=len(kills),
        republished=republished(redis, ids),
        dead_letters=redis.llen("elastiq:dead"),
        recovery_s_max=round(max(recovery), 2) if recovery else None,
        recovery_s_median=round(statistics.median(recovery), 2) if recovery else None,
        run_s=round(done_at - t0, 1), exit_codes=sorted({c for _, c, _ in sup.exits}),
        notes="recovery = result of a re-executed job minus the kill of the worker that first held it "
              "(visibility timeout 12 s + 1 s sweep)")
    assert len(kills) == n_kills, data
    assert not bad, list(bad.items())[:3]
    assert len(ok) == n_jobs and not lost, data
    assert counts["submitted"] == n_jobs and counts["lost"] == 0 and counts["failed"] == 0, data
    assert not duplicated and counts["duplicated"] == 0, [(i, tap.by_id[i]) for i in duplicated[:5]]
    assert all(published[i] == 1 for i in ids), "every job has exactly one published result"
    assert re_executed, "killing busy workers re-executes the jobs they held"
    assert all(ex[i] >= 1 for i in ids)
    assert wait_for(lambda: unacked(redis) == 0, 20, what="unacked to empty")


@pytest.mark.scenario("03_sigterm_warm_shutdown", "SIGTERM a worker with 4 running jobs (warm shutdown)")
def test_sigterm_finishes_running_jobs_and_hands_back_the_rest(fast_env, workers, client, redis, tap, scenario):
    a, b = workers.start("debug", n=2, slots=4)
    jobs = client.submit_many("debug", [[f"t {i}"] for i in range(24)], sleep_ms=1500)
    ids = [j.id for j in jobs]
    wait_for(lambda: procs.read_heartbeats(redis).get(a, {}).get("busy", 0) >= 4, 20, what="A busy")
    t_term = time.time()
    running_on_a = [i for i, r in records(redis, ids).items() if r.get("worker") == a]
    workers.signal(a, signal.SIGTERM)
    code = workers.procs[a].wait(30)
    t_exit = time.time()
    ok, bad = collect(client, jobs, timeout_s=60)
    ex = executions(redis, ids)
    on_a = [i for i in ids if i in ok and ok[i].timings["worker"] == a]
    finished_on_a_after_term = [i for i in on_a if ok[i].timings["finished_at"] > t_term]
    started_on_a_after_term = [i for i in on_a if ok[i].timings["started_at"] > t_term + 0.2]
    duplicated = tap.duplicated(ids)
    counts = tally(tap, redis, ids, "elastiq.debug")
    data = scenario.record(
        **counts, client_results=len(ok), client_errors=len(bad), executions=sum(ex.values()),
        re_executed=sum(1 for v in ex.values() if v > 1), exit_code=code,
        running_at_sigterm=len(running_on_a), finished_on_a_after_sigterm=len(finished_on_a_after_term),
        done_by_other_worker=sum(1 for i in ok if ok[i].timings["worker"] == b),
        recovery_s_max=round(t_exit - t_term, 2),
        notes="recovery = SIGTERM to exit of the worker (its running jobs finish first)")
    assert code == 0, workers.log(a)[-2000:]
    assert len(ok) == len(ids) and not bad, data
    assert counts["lost"] == counts["failed"] == counts["duplicated"] == counts["left_in_queue"] == 0, data
    assert len(finished_on_a_after_term) >= 1 and set(running_on_a) <= set(on_a), data
    assert not started_on_a_after_term, data
    assert all(v == 1 for v in ex.values()), data
    assert not duplicated
    assert data["done_by_other_worker"] == len(ids) - len(on_a)
    assert unacked(redis) == 0
