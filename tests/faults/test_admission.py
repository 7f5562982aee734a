"""What a worker lets in from its queue, black-box: raw protocol-2 messages LPUSHed onto
the real queue, a real worker process, and only what can be observed from outside -- the
result backend (through the result tap), the dead-letter list, and a normal job answered
afterwards by the same process.

- Every task name the worker's Celery app registers, except its own, is refused: each
  message is answered DeadLetteredError (exactly once) and dead-lettered, nothing runs.
- A queue item over the size limit is refused before it is decoded: dead-lettered with a
  bounded preview, its job answered InputTooLargeError; a job at the limit still runs.
"""

from __future__ import annotations

import uuid

import pytest

from elastiq import contract
from elastiq.errors import DeadLetteredError, ElastiqError, InputTooLargeError
from tests.faults.conftest import tally, wait_for
from tests.faults.rawmsg import envelope, headers_for, task_message
from workers.deadletter import MAX_BODY_PREVIEW, dead_letters

pytestmark = pytest.mark.faults

QUEUE = "elastiq.debug"


def worker_task_names() -> list[str]:
    """Every key of ``app.tasks`` of the worker's Celery app (built the way workers/worker.py
    builds it, for control and events: Celery registers its built-ins in it), and its own."""
    from elastiq.celeryconf import make_celery
    from elastiq.settings import Settings

    app = make_celery(Settings.from_env(), name="elastiq-worker")
    return sorted(set(app.tasks) | {contract.TASK_NAME})


def outcome(job, timeout_s: float):
    try:
        return job.result(timeout=timeout_s)
    except ElastiqError as exc:
        return exc


@pytest.mark.scenario("09f_builtin_tasks_refused", "A raw message for every task the worker's Celery app registers "
                                                   "but its own (celery.group, chord_unlock, backend_cleanup...)")
def test_every_task_name_but_its_own_is_refused(prod_env, workers, client, redis, tap, scenario):
    names = [n for n in worker_task_names() if n != contract.TASK_NAME]
    assert len(names) >= 9 and "celery.chord_unlock" in names and "celery.backend_cleanup" in names, names
    (wid,) = workers.start("debug", n=1, slots=4)
    pid = workers.pid(wid)
    ids = {}
    for name in names:      # the shapes those tasks take: no args, no kwargs
        ids[name] = str(uuid.uuid4())
        body = b'[[], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'
        redis.lpush(QUEUE, envelope(body, headers=headers_for(ids[name], task=name), task_id=ids[name]))
    got = {name: outcome(client.job(ids[name], "debug"), 30) for name in names}
    wait_for(lambda: redis.llen(QUEUE) == 0, 10, what="the queue to empty")
    canary = client.submit("debug", ["still serving"]).result(timeout=30).outputs
    dead = {e.get("job_id"): e for e in dead_letters(redis, 1000)}
    published = {name: tap.by_id.get(ids[name], []) for name in names}

    counts = tally(tap, redis, list(ids.values()), QUEUE)
    data = scenario.record(**counts, re_executed=None, task_names=names,
                           refused_dead_lettered=sum(1 for n in names if ids[n] in dead))
    not_refused = {n: repr(o)[:120] for n, o in got.items() if not isinstance(o, DeadLetteredError)}
    assert not not_refused, not_refused
    assert all(published[n] == ["FAILURE"] for n in names), published        # answered once, never run
    missing = [n for n in names if ids[n] not in dead or n not in dead[ids[n]]["reason"]]
    assert not missing, missing
    assert counts["failed"] == len(names) and counts["lost"] == counts["left_in_queue"] == 0, data
    assert workers.procs[wid].poll() is None and workers.pid(wid) == pid
    assert canary == [len("still serving")]


@pytest.mark.scenario("09g_oversized_refused", "A 10 MB queue item (limit 100 KB + envelope): refused before "
                                               "decoding; a job at the limit still runs")
def test_oversized_item_is_refused_before_decoding(prod_env, workers, client, redis, tap, monkeypatch, scenario):
    limit = 100_000
    monkeypatch.setenv("ELASTIQ_MAX_MESSAGE_BYTES", str(limit))       # the client's side of the limit
    (wid,) = workers.start("debug", n=1, slots=4, env={"ELASTIQ_MAX_MESSAGE_BYTES": str(limit)})
    pid = workers.pid(wid)
    big_id = str(uuid.uuid4())
    huge = task_message({"model": "debug", "inputs": ["x" * 8_000_000]}, task_id=big_id)
    assert len(huge) > 10_000_000
    redis.lpush(QUEUE, huge)
    got = outcome(client.job(big_id, "debug"), 60)
    # at the limit: 6 texts of 8,000 "é" (2 bytes as the client measures it, a 6-byte \u
    # escape on the wire): ~96 KB to the client, ~385 KB as a queue item: still run
    jobs = [client.submit("debug", ["\u00e9" * 8000] * 6), client.submit("debug", ["next job"])]
    at_limit, after = (j.result(timeout=60).outputs for j in jobs)
    entry = next((e for e in dead_letters(redis, 100) if e.get("job_id") == big_id), None)
    counts = tally(tap, redis, [big_id] + [j.id for j in jobs], QUEUE)
    data = scenario.record(**counts, re_executed=None, item_bytes=len(huge), limit_bytes=limit,
                           preview_chars=len((entry or {}).get("body", "")), reason=(entry or {}).get("reason"))

    assert isinstance(got, InputTooLargeError) and "not decoded" in str(got), got
    assert tap.by_id.get(big_id) == ["FAILURE"]
    assert entry is not None and "not decoded" in entry["reason"], dead_letters(redis, 5)
    assert len(entry["body"]) <= MAX_BODY_PREVIEW
    assert at_limit == [8000] * 6 and after == [len("next job")]
    assert workers.procs[wid].poll() is None and workers.pid(wid) == pid
    assert counts["failed"] == 1 and counts["lost"] == counts["duplicated"] == 0, data
