"""Scenario 7: poison jobs. An input that kills its worker (``!crash``) is run at most
``max_deliveries`` times, then dead-lettered -- at production defaults, within a minute
of its first crash (each crash is noticed when the dead worker's heartbeat expires); an
input that hangs the forward pass (``!hang``) fails at the soft limit, is dead-lettered,
and the wedged worker exits at the hard limit so it cannot hold jobs forever. The pool
keeps serving throughout."""

from __future__ import annotations

import json
import time

import pytest

from elastiq import contract
from elastiq.errors import DeadLetteredError, ElastiqError, JobTimeoutError
from tests.faults.conftest import Supervisor, executions, held, reaped, records, tally, wait_for
from workers.deadletter import dead_letters
from workers.state import EXIT_HARD_TIME_LIMIT

pytestmark = pytest.mark.faults


def outcome(job, timeout_s):
    try:
        return job.result(timeout=timeout_s)
    except ElastiqError as exc:
        return exc


def unanswered_and_queued(redis, jobs, outcomes) -> list[str]:
    """Jobs whose wait timed out while their record still says `queued`: never received."""
    return [j.id for j, o in zip(jobs, outcomes) if isinstance(o, JobTimeoutError)
            and redis.hget(contract.job_key(j.id), "state") == contract.QUEUED]


def status_json(capsys) -> dict:
    from elastiq.cli import main

    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.scenario("07a_poison_crash", "Poison input that SIGKILLs its worker (`!crash`), max_deliveries=3, "
                                        "production defaults")
def test_crashing_input_is_dead_lettered_after_max_deliveries(prod_env, workers, client, redis, tap, capsys,
                                                              scenario):
    workers.start("debug", n=2, slots=4)
    sup = Supervisor(workers, "debug", slots=4)
    sup.start()
    try:
        mates = client.submit_many("debug", [[f"mate {i}"] for i in range(12)], sleep_ms=300)
        poison = client.submit("debug", ["!crash now"])
        later = client.submit_many("debug", [[f"later {i}"] for i in range(40)], sleep_ms=50)
        got = outcome(poison, 120)
        t_dead = time.time()
        others = [outcome(j, 60) for j in mates + later]
        after_jobs = client.submit_many("debug", [["after"]] * 10)
        after = [outcome(j, 60) for j in after_jobs]
    finally:
        sup.stop()
    good = mates + later
    ids = [j.id for j in good]
    ex = executions(redis, ids + [poison.id])
    rec = records(redis, [poison.id])[poison.id]
    dl = dead_letters(redis, 50)
    st = status_json(capsys)
    failed_others = [o for o in others if isinstance(o, Exception)]
    never_received = unanswered_and_queued(redis, good, others)
    first_crash = min(t for _, _, t in sup.exits) if sup.exits else None
    counts = tally(tap, redis, ids + [poison.id] + [j.id for j in after_jobs], "elastiq.debug")
    data = dict(
        **counts, never_received=len(never_received),
        executions=sum(ex.values()), re_executed=sum(1 for i in ids if ex[i] > 1),
        poison_deliveries=ex[poison.id], poison_result=type(got).__name__, reaped=reaped(redis, ids),
        worker_deaths=len(sup.exits), failures=[f"{type(o).__name__}: {o}" for o in failed_others][:5],
        innocents_dead_lettered=sum(1 for e in dl if e["job_id"] in set(ids)),
        dead_letter_after_first_crash_s=round(t_dead - first_crash, 1) if first_crash else None,
        recovery_s_max=round(t_dead - first_crash, 1) if first_crash else None,
        notes="recovery = first crash to dead-letter of the poison job (3 crashes, each noticed when "
              "the dead worker's 6 s heartbeat expires); innocent jobs re-run alone are never blamed")
    assert isinstance(got, DeadLetteredError), got
    # delivered 4 times, run 3 (each run killed its worker), the 4th refused
    assert ex[poison.id] == 4 and rec["state"] == contract.DEAD, rec
    assert [e for e in dl if e["job_id"] == poison.id and "delivered 4 times" in e["reason"]
            and "killed the worker while it ran alone" in e["reason"]], dl
    assert data["dead_letter_after_first_crash_s"] <= 60, data
    assert not never_received, data
    assert not failed_others, failed_others[:3]
    assert all(not isinstance(o, Exception) for o in after)
    assert data["innocents_dead_lettered"] == 0
    assert len(sup.exits) == 3 and all(c == -9 for _, c, _ in sup.exits), sup.exits
    assert st["dead_letters"]["count"] >= 1
    assert any(e["job_id"] == poison.id for e in st["dead_letters"]["latest"])
    assert not tap.duplicated(ids)
    assert counts["lost"] == 0 and counts["failed"] == 1 and counts["duplicated"] == 0, data   # the poison only
    assert wait_for(lambda: held(redis) == 0, 20, what="nothing left held")
    scenario.record(**data)


@pytest.mark.scenario("07b_poison_hang", "Poison input that hangs the forward pass (`!hang`): time limits "
                                       "shortened to soft 4 s / hard 5 s (defaults 120 s / 180 s) to bound it")
def test_hanging_input_times_out_dead_letters_and_worker_exits(short_time_limits, workers, client, redis, tap,
                                                               scenario):
    workers.start("debug", n=2, slots=4)
    sup = Supervisor(workers, "debug", slots=4)
    sup.start()
    t0 = time.time()
    try:
        hang = client.submit("debug", ["!hang forever"])
        wait_for(lambda: redis.hget(contract.job_key(hang.id), "state") == contract.STARTED, 20, what="hang start")
        later = client.submit_many("debug", [[f"later {i}"] for i in range(60)], sleep_ms=100)
        got = outcome(hang, 30)
        t_timeout = time.time()
        others = [outcome(j, 90) for j in later]
        wait_for(lambda: sup.exits, 30, what="the wedged worker to exit")
        t_exit = sup.exits[0][2]
        after_jobs = client.submit_many("debug", [["after"]] * 10)
        after = [outcome(j, 60) for j in after_jobs]
    finally:
        sup.stop()
    ids = [j.id for j in later]
    ex = executions(redis, ids)
    dl = dead_letters(redis, 50)
    failed_others = [o for o in others if isinstance(o, Exception)]
    never_received = unanswered_and_queued(redis, later, others)
    counts = tally(tap, redis, ids + [hang.id] + [j.id for j in after_jobs], "elastiq.debug")
    data = dict(
        **counts, never_received=len(never_received),
        executions=sum(executions(redis, ids + [hang.id]).values()), re_executed=sum(1 for i in ids if ex[i] > 1),
        poison_result=type(got).__name__, poison_timeout_s=round(t_timeout - t0, 1),
        reaped=reaped(redis, ids),
        worker_exit_codes=[c for _, c, _ in sup.exits],
        failures=[f"{type(o).__name__}: {o}" for o in failed_others][:5], recovery_s_max=round(t_exit - t0, 1),
        notes="recovery = submit of the hang to exit of the wedged worker (hard limit + shutdown)")
    assert isinstance(got, JobTimeoutError), got
    assert [e for e in dl if e["job_id"] == hang.id and "soft time limit" in e["reason"]], dl
    assert [c for _, c, _ in sup.exits] == [EXIT_HARD_TIME_LIMIT], sup.exits
    assert not failed_others, failed_others[:3]
    assert all(not isinstance(o, Exception) for o in after)
    assert not tap.duplicated(ids)
    assert counts["lost"] == 0 and counts["failed"] == 1 and counts["duplicated"] == 0, data   # the hang only
    assert wait_for(lambda: held(redis) == 0, 20, what="nothing left held")
    scenario.record(**data)
