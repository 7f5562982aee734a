"""Scenarios 1 and 3, at production defaults: workers SIGKILLed and SIGSTOPped mid-job,
and a worker SIGTERMed with held jobs (warm shutdown).

A dead worker's jobs are owned reservations: they come back when its heartbeat expires
(``ELASTIQ_HEARTBEAT_TTL_S``, 6 s) plus one reaper pass, whatever the jobs' length; a live
but stalled worker keeps them while its heartbeat lives, and cannot answer them after."""

from __future__ import annotations

import json
import signal
import statistics
import time

import pytest

from autoscaler.signals import Signals
from elastiq import contract
from elastiq.errors import ElastiqError
from elastiq.local import procs
from elastiq.local.stack_cli import collect_status
from elastiq.registry import Registry
from tests.faults.conftest import Supervisor, executions, held, reaped, records, settle, tally, wait_for

pytestmark = pytest.mark.faults
Q = "elastiq.debug"


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


def held_ids(redis, worker: str) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in redis.hvals(contract.held_key(worker))]


@pytest.mark.scenario("01_sigkill_busy_worker", "SIGKILL a busy worker mid-job, 3x in a 3,000-job run "
                                              "(3 workers x 8 slots), production defaults")
def test_sigkill_three_busy_workers_in_3000_jobs(prod_env, workers, client, redis, tap, scenario):
    n_jobs, n_kills = 3000, 3
    workers.start("debug", n=3, slots=8)
    sup = Supervisor(workers, "debug", slots=8)
    sup.start()
    kills: dict[str, tuple[float, list[str]]] = {}
    t0 = time.time()
    try:
        jobs = client.submit_many("debug", [[f"job {i}"] for i in range(n_jobs)], sleep_ms=250)
        ids = [j.id for j in jobs]
        while len(kills) < n_kills and time.time() - t0 < 120:
            beats = procs.read_heartbeats(redis)
            busy = [(b.busy, w) for w, b in beats.items()
                    if w in workers.procs and workers.procs[w].poll() is None and w not in kills
                    and b.busy >= 4]
            if not busy:
                time.sleep(0.1)
                continue
            victim = max(busy)[1]
            workers.signal(victim, signal.SIGKILL)
            t_kill = time.time()
            workers.procs[victim].wait(10)
            kills[victim] = (t_kill, held_ids(redis, victim))      # frozen: its holder is dead
            time.sleep(4.0)      # the scenario: kills spread over the run, at least 4 s apart
        ok, bad = collect(client, jobs, timeout_s=300)
        done_at = time.time()
    finally:
        sup.stop()
    settle(tap, redis, Q)      # nothing held or queued that could publish a late duplicate; tap caught up
    ex = executions(redis, ids)
    published = {i: len(tap.by_id.get(i, [])) for i in ids}
    # per job held by a killed worker: from the kill to its new reservation elsewhere
    restart = [ok[i].timings["reserved_at"] - t_kill for t_kill, held_at in kills.values()
               for i in held_at if i in ok]
    lost = [i for i in ids if i not in ok and i not in bad]
    counts = tally(tap, redis, ids, Q)
    data = scenario.record(
        **counts, client_results=len(ok), client_errors=len(bad),
        executions=sum(ex.values()), re_executed=sum(1 for v in ex.values() if v > 1), kills=len(kills),
        held_by_killed=sum(len(h) for _, h in kills.values()), reaped=reaped(redis, ids),
        restart_s_max=round(max(restart), 2) if restart else None,
        restart_s_median=round(statistics.median(restart), 2) if restart else None,
        recovery_s_max=round(max(restart), 2) if restart else None,
        run_s=round(done_at - t0, 1), exit_codes=sorted({c for _, c, _ in sup.exits}),
        notes="recovery = per job held by a killed worker, its kill to its new reservation on another "
              "worker (heartbeat TTL 6 s + reaper pass)")
    assert len(kills) == n_kills, data
    assert not bad and not lost and len(ok) == n_jobs, data
    assert counts["lost"] == counts["failed"] == counts["duplicated"] == counts["left_in_queue"] == 0, data
    assert all(v == 1 for v in published.values()), "every job has exactly one published result"
    assert data["held_by_killed"] >= n_kills * 4 and len(restart) == data["held_by_killed"], data
    assert max(restart) <= 10.0, data
    assert wait_for(lambda: held(redis) == 0, 20, what="nothing left held")


@pytest.mark.scenario("01b_dead_worker_backlog", "A SIGKILLed worker's 8 held jobs, sampled as backlog until "
                                                "answered elsewhere")
def test_a_dead_workers_jobs_stay_backlog_until_they_run_elsewhere(prod_env, workers, client, redis, tap, scenario):
    """Killed, its 8 held jobs are never invisible: in flight while its heartbeat lives,
    waiting once it has expired, back in the list once reaped -- for `elastiq status` and
    for the autoscaler's signals alike."""
    (a,) = workers.start("debug", n=1, slots=8)
    jobs = client.submit_many("debug", [[f"long {i}"] for i in range(8)], sleep_ms=30000)
    wait_for(lambda: getattr(procs.read_heartbeats(redis).get(a), "busy", 0) == 8, 20, what="A holds 8")
    workers.signal(a, signal.SIGKILL)
    t_kill = time.time()
    signals, registry = Signals(redis), Registry.from_env()
    samples, started_b = [], None
    while time.time() - t_kill < 40:
        now = time.time()
        row = next(q for q in collect_status(redis, registry, now)["queues"] if q["queue"] == Q)
        snap = signals.snapshot(Q, [], now).queue
        done = sum(1 for j in jobs if j.status() == contract.DONE)
        samples.append((round(now - t_kill, 1), row["waiting"], row["in_flight"], snap.waiting, snap.in_flight, done))
        if started_b is None and not redis.exists(contract.heartbeat_key(a)):
            started_b = time.time()
            workers.start("debug", n=1, slots=8, wait=False)     # its reaper hands the 8 out again
        if done == 8:
            break
        time.sleep(0.25)
    ok, bad = collect(client, jobs, 60)
    counts = tally(tap, redis, [j.id for j in jobs], Q)
    scenario.record(**counts, re_executed=sum(1 for v in executions(redis, [j.id for j in jobs]).values() if v > 1),
                    samples=len(samples), invisible_samples=sum(1 for s in samples if s[1] + s[2] + s[5] < 8),
                    recovery_s_max=round(max(r.timings["reserved_at"] for r in ok.values()) - t_kill, 2),
                    notes="each sample: status waiting + in flight + done, and the autoscaler's signals, "
                          "must count all 8")
    assert len(ok) == 8 and not bad
    assert counts["lost"] == counts["failed"] == counts["duplicated"] == 0, counts
    assert all(w + f + d >= 8 and sw + sf + d >= 8 for _, w, f, sw, sf, d in samples), samples
    assert any(f == 0 and w >= 8 for _, w, f, _, _, _ in samples), "seen as waiting once its heartbeat expired"


@pytest.mark.scenario("01c_sigstop_30s", "SIGSTOP a worker holding 4 jobs for 30 s, then SIGCONT")
def test_a_stalled_worker_keeps_its_jobs_while_alive_then_loses_them(prod_env, workers, client, redis, tap, scenario):
    """SIGSTOP for 30 s: its heartbeat lives 6 s more, and its jobs with it; then another
    worker's reaper hands them out; resumed, the stalled worker cannot answer them again."""
    (a,) = workers.start("debug", n=1, slots=4)
    jobs = client.submit_many("debug", [[f"s {i}"] for i in range(4)], sleep_ms=8000)
    ids = [j.id for j in jobs]
    wait_for(lambda: len(held_ids(redis, a)) == 4, 20, what="A holds 4")
    (b,) = workers.start("debug", n=1, slots=4)
    workers.signal(a, signal.SIGSTOP)
    t_stop = time.time()
    time.sleep(3.0)      # the scenario: 3 s into the stall, inside the 6 s heartbeat TTL
    kept = sorted(held_ids(redis, a))                      # heartbeat still alive: still A's
    t_expired = wait_for(lambda: not redis.exists(contract.heartbeat_key(a)) and time.time(), 15,
                         interval_s=0.05, what="A's heartbeat to expire")
    wait_for(lambda: all(records(redis, ids)[i].get("worker") == b for i in ids), 15, what="B takes them")
    time.sleep(max(0.0, t_stop + 30 - time.time()))      # the scenario: A stays stopped 30 s in all
    workers.signal(a, signal.SIGCONT)
    ok, bad = collect(client, jobs, 60)
    wait_for(lambda: getattr(procs.read_heartbeats(redis).get(a), "lost_ownership", 0) == 4, 20,
             what="A to find its 4 answers refused")
    settle(tap, redis, Q)      # A's refused commits are done (its heartbeat counts them); tap caught up
    handover = [ok[i].timings["reserved_at"] - t_expired for i in ids]
    counts = tally(tap, redis, ids, Q)
    data = scenario.record(
        **counts, re_executed=sum(1 for v in executions(redis, ids).values() if v > 1),
        kept_while_alive=len(kept), handover_s_max=round(max(handover), 2),
        heartbeat_expired_after_s=round(t_expired - t_stop, 2), recovery_s_max=round(max(handover), 2),
        notes="recovery = A's heartbeat expiry to each job's reservation by B; A's late answers refused")
    assert kept == sorted(ids), data
    assert len(ok) == 4 and all(r.timings["worker"] == b for r in ok.values()), data
    assert max(handover) <= 10.0, data
    assert not tap.duplicated(ids) and all(len(tap.by_id[i]) == 1 for i in ids), data
    assert counts["lost"] == counts["failed"] == counts["duplicated"] == 0, data


@pytest.mark.scenario("03_sigterm_warm_shutdown", "SIGTERM a worker holding 4 jobs (warm shutdown)")
def test_sigterm_finishes_held_jobs_and_hands_back_the_rest(prod_env, workers, client, redis, tap, scenario):
    a, b = workers.start("debug", n=2, slots=4)
    jobs = client.submit_many("debug", [[f"t {i}"] for i in range(24)], sleep_ms=1500)
    ids = [j.id for j in jobs]
    wait_for(lambda: getattr(procs.read_heartbeats(redis).get(a), "busy", 0) >= 4, 20, what="A busy")
    t_term = time.time()
    running_on_a = held_ids(redis, a)
    workers.signal(a, signal.SIGTERM)
    code = workers.procs[a].wait(30)
    t_exit = time.time()
    ok, bad = collect(client, jobs, timeout_s=60)
    ex = executions(redis, ids)
    on_a = [i for i in ids if i in ok and ok[i].timings["worker"] == a]
    finished_on_a_after_term = [i for i in on_a if ok[i].timings["finished_at"] > t_term]
    started_on_a_after_term = [i for i in on_a if ok[i].timings["reserved_at"] > t_term + 0.2]
    duplicated = tap.duplicated(ids)
    counts = tally(tap, redis, ids, Q)
    data = scenario.record(
        **counts, client_results=len(ok), client_errors=len(bad), executions=sum(ex.values()),
        re_executed=sum(1 for v in ex.values() if v > 1), exit_code=code,
        running_at_sigterm=len(running_on_a), finished_on_a_after_sigterm=len(finished_on_a_after_term),
        done_by_other_worker=sum(1 for i in ok if ok[i].timings["worker"] == b),
        recovery_s_max=round(t_exit - t_term, 2),
        notes="recovery = SIGTERM to exit of the worker (its held jobs finish first)")
    assert code == 0, workers.log(a)[-2000:]
    assert len(ok) == len(ids) and not bad, data
    assert counts["lost"] == counts["failed"] == counts["duplicated"] == counts["left_in_queue"] == 0, data
    assert len(finished_on_a_after_term) >= 1 and set(running_on_a) <= set(on_a), data
    assert not started_on_a_after_term, data
    assert all(v == 1 for v in ex.values()), data
    assert not duplicated
    assert data["done_by_other_worker"] == len(ids) - len(on_a)
    assert held(redis) == 0
