"""Scenario 9 and secure-by-default inputs: fuzzed payloads through the client and as raw
messages LPUSHed onto the queue; a pickled message is refused, never run; input limits
hold at the worker for messages that skipped the client."""

from __future__ import annotations

import json
import os
import pickle
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elastiq import contract
from elastiq.errors import (
    BY_NAME,
    DeadLetteredError,
    ElastiqError,
    InputTooLargeError,
    InputTypeError,
    ValidationError,
)
from tests.faults.conftest import settle, tally
from tests.faults.rawmsg import EMBED, envelope, headers_for, task_message
from workers.deadletter import dead_letters

pytestmark = pytest.mark.faults

QUEUE = "elastiq.debug"
N = int(os.environ.get("ELASTIQ_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=N, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

safe_text = st.text(max_size=40).filter(lambda t: not t.lstrip().startswith("!"))
huge = st.integers(8000, 20000).map(lambda n: "y" * n)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      safe_text, huge)
json_value = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                         st.dictionaries(safe_text, c, max_size=4)),
                          max_leaves=8)
models = st.one_of(st.just("debug"), st.just("debug"), safe_text, st.integers(), st.none(),
                   st.lists(safe_text, max_size=2))
inputs = st.one_of(st.lists(safe_text, min_size=0, max_size=5), st.lists(json_value, max_size=4),
                   safe_text, st.lists(huge, max_size=2), st.integers(0, 400).map(lambda n: ["z"] * n),
                   st.just(["bad \ud800 surrogate"]), json_value)
valid_texts = st.lists(st.text(min_size=1, max_size=30).filter(lambda t: t.strip() and not t.lstrip().startswith("!")),
                      min_size=1, max_size=4)
params = st.one_of(st.none(), st.just({}), st.dictionaries(st.sampled_from(["sleep_ms", "fail", "top_k", "x"]),
                                                           json_value, max_size=2), json_value)


def answered(job, timeout_s: float) -> object:
    try:
        return job.result(timeout=timeout_s)
    except ElastiqError as exc:
        return exc


def typed(outcome) -> bool:
    """A Result, or an elastiq error that is not a wrapped foreign exception."""
    if not isinstance(outcome, Exception):
        return True
    return type(outcome).__name__ in BY_NAME and "failed on the worker:" not in str(outcome)


@pytest.mark.scenario("09_fuzz_inputs", f"Fuzzed inputs: {N} via the client + {N} raw messages "
                                        "(+5 non-kombu envelopes)")
def test_fuzz_client_and_raw_messages(prod_env, workers, client, redis, tap, scenario):
    (wid,) = workers.start("debug", n=1, slots=8)
    pid = workers.pid(wid)

    # -- 1. through the client: refused before queueing (typed), or answered by the worker
    refused, queued = [], []

    @FUZZ
    @given(model=models, inputs=inputs, params=params, valid=st.booleans(), texts=valid_texts)
    def through_client(model, inputs, params, valid, texts):
        if valid:    # half well-formed, so the worker side is exercised too
            model, inputs, params = "debug", texts, {}
        try:
            kw = params if isinstance(params, dict) and all(isinstance(k, str) for k in params) else {}
            queued.append(client.submit(model, inputs, **kw))
        except ValidationError as exc:
            refused.append(exc)
        except TypeError as exc:     # a non-str keyword cannot even reach submit(**params)
            refused.append(exc)

    through_client()
    client._wait(queued, 120)
    outcomes = [answered(j, 0) for j in queued]
    untyped_client = [o for o in outcomes if not typed(o)]

    # -- 2. raw messages straight onto the queue
    raw_ids: list[str] = []
    no_id = [0]

    kinds = st.sampled_from(["body", "kwargs", "task", "ctype", "utf8", "noid", "headers", "args"])

    @FUZZ
    @given(kind=kinds, value=json_value, model=models, inp=inputs, prm=params,
           name=safe_text, ctype=st.sampled_from(["application/x-python-serialize", "application/x-yaml",
                                                  "text/plain", "application/data", "application/json",
                                                  "application/x-msgpack", "bogus/type"]),
           blob=st.binary(max_size=200))
    def raw(kind, value, model, inp, prm, name, ctype, blob):
        tid = str(uuid.uuid4())
        if kind == "body":
            msg = envelope(json.dumps(value).encode(), headers=headers_for(tid), task_id=tid)
        elif kind == "kwargs":
            msg = task_message({"model": model, "inputs": inp, "params": prm}, task_id=tid)
        elif kind == "args":
            msg = task_message({"model": "debug"}, args=[value, model], task_id=tid)
        elif kind == "task":
            msg = task_message({"model": "debug", "inputs": ["x"]}, task_id=tid, task=name or "x")
        elif kind == "ctype":
            msg = envelope(blob, content_type=ctype if ctype != "application/json" else "text/json",
                           encoding="binary", headers=headers_for(tid), task_id=tid)
        elif kind == "utf8":
            msg = envelope(b"\xff\xfe[" + blob, headers=headers_for(tid), task_id=tid)
        elif kind == "noid":
            msg = envelope(json.dumps([[], {"model": "debug", "inputs": ["x"]}, EMBED]).encode(),
                           headers=headers_for(None), task_id=None)
        else:  # headers of the wrong type
            msg = envelope(json.dumps(value).encode(), headers=[value, name], task_id=tid)
        if kind in ("noid", "headers"):
            no_id[0] += 1
        else:
            raw_ids.append(tid)
        redis.lpush(QUEUE, msg)

    dead_before = redis.llen(contract.DEAD_LETTER_KEY)
    raw()
    # a few envelopes that are not even kombu messages
    for junk in ["not json at all", "{\"body\": 1}", "[]", "\"str\"", "{}"]:
        redis.lpush(QUEUE, junk)
        no_id[0] += 1
    raw_jobs = [client.job(i, "debug") for i in raw_ids]
    client._wait(raw_jobs, 180)
    raw_out = [answered(j, 0) for j in raw_jobs]
    settle(tap, redis, QUEUE, 30)        # queue empty, nothing held: every dead letter written; tap caught up
    dead = dead_letters(redis, 100000)
    dead_no_id = [e for e in dead if not e.get("job_id")]
    untyped_raw = [o for o in raw_out if not typed(o)]
    alive = workers.procs[wid].poll() is None and workers.pid(wid) == pid
    canary = client.submit("debug", ["still serving"]).result(timeout=30).outputs

    counts = tally(tap, redis, [j.id for j in queued] + raw_ids, QUEUE)
    # messages without an id cannot be answered: they count as delivered when dead-lettered
    counts["submitted"] += no_id[0]
    counts["delivered"] += len(dead_no_id)
    counts["lost"] += no_id[0] - len(dead_no_id)
    data = scenario.record(
        **counts, re_executed=None, client_generated=len(refused) + len(queued), client_refused_before_queue=len(refused),
        client_queued=len(queued), client_untyped=len(untyped_client),
        raw_with_id=len(raw_ids), raw_answered_typed=len(raw_out) - len(untyped_raw),
        raw_without_id=no_id[0], dead_lettered_without_id=len(dead_no_id),
        dead_letters_total=len(dead) - dead_before, worker_crashes=0 if alive else 1,
        outcome_types=sorted({type(o).__name__ for o in outcomes + raw_out}),
        notes="each raw message with an id answered with a typed error (or a result); each without one "
              "dead-lettered with its reason; the one worker process never restarted")
    assert len(refused) + len(queued) >= 1000 and len(raw_ids) + no_id[0] >= 1000, data
    assert all(isinstance(e, (ValidationError, TypeError)) for e in refused)
    assert not untyped_client, untyped_client[:5]
    assert not untyped_raw, untyped_raw[:5]
    assert len(dead_no_id) == no_id[0], data
    assert counts["lost"] == counts["duplicated"] == counts["left_in_queue"] == 0, data
    assert all(e.get("reason") for e in dead)
    assert alive, workers.log(wid)[-3000:]
    assert canary == [len("still serving")]


@pytest.mark.scenario("09b_pickle_refused", "Pickle-serialized Celery message LPUSHed onto the queue")
def test_pickle_message_is_refused_not_run(prod_env, workers, client, redis, tmp_path, tap, scenario):
    (wid,) = workers.start("debug", n=1, slots=2)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    tid = str(uuid.uuid4())
    body = pickle.dumps(((Evil(),), {"model": "debug", "inputs": ["x"]}, EMBED))
    redis.lpush(QUEUE, envelope(body, content_type="application/x-python-serialize", encoding="binary",
                                headers=headers_for(tid), task_id=tid))
    # the same with a task name Celery itself registers
    tid2 = str(uuid.uuid4())
    redis.lpush(QUEUE, envelope(body, content_type="application/x-python-serialize", encoding="binary",
                                headers=headers_for(tid2, task="celery.backend_cleanup"), task_id=tid2))
    outcomes = [answered(client.job(t, "debug"), 30) for t in (tid, tid2)]
    settle(tap, redis, QUEUE, 10)        # queue empty, nothing held: both dead letters written; tap caught up
    dead = {e["job_id"]: e for e in dead_letters(redis, 10)}
    counts = tally(tap, redis, [tid, tid2], QUEUE)
    scenario.record(**counts, re_executed=None, executed=int(marker.exists()),
                    reasons=[dead.get(t, {}).get("reason") for t in (tid, tid2)],
                    notes="answered DeadLetteredError, never deserialized")
    assert not marker.exists(), "the pickle was deserialized: code ran"
    assert all(isinstance(o, DeadLetteredError) for o in outcomes), outcomes
    assert tid in dead and "is not accepted (JSON only)" in dead[tid]["reason"], dead
    assert tid2 in dead
    assert counts["delivered"] == 2 and counts["duplicated"] == 0
    assert workers.procs[wid].poll() is None


@pytest.mark.scenario("09c_worker_limits", "Input limits at the worker (raw messages that skipped the client)")
def test_input_limits_hold_at_the_worker(prod_env, workers, client, redis, tap, scenario):
    workers.start("debug", n=1, slots=4, env={"ELASTIQ_MAX_TEXT_CHARS": "100", "ELASTIQ_MAX_ITEMS_PER_JOB": "5",
                                               "ELASTIQ_MAX_MESSAGE_BYTES": "2000"})
    cases = {
        "long_text": ({"model": "debug", "inputs": ["x" * 101]}, InputTooLargeError),
        "many_items": ({"model": "debug", "inputs": ["x"] * 6}, InputTooLargeError),
        "big_message": ({"model": "debug", "inputs": ["x" * 90] * 5, "params": {"fail": "y" * 1900}},
                        InputTooLargeError),
        "not_a_list": ({"model": "debug", "inputs": "x"}, InputTypeError),
        # over the queue-item limit (ELASTIQ_MAX_MESSAGE_BYTES plus envelope): refused
        # before it is decoded (workers/admission.py), answered InputTooLargeError
        "huge_10mb": ({"model": "debug", "inputs": ["x" * 10_000_000]}, InputTooLargeError),
        "ok": ({"model": "debug", "inputs": ["x" * 100] * 5}, None),
    }
    ids = {}
    for name, (kwargs, _) in cases.items():
        ids[name] = str(uuid.uuid4())
        redis.lpush(QUEUE, task_message(kwargs, task_id=ids[name]))
    got = {name: answered(client.job(ids[name], "debug"), 60) for name in cases}
    counts = tally(tap, redis, list(ids.values()), QUEUE)
    data = scenario.record(**counts, re_executed=None, outcomes={k: type(v).__name__ for k, v in got.items()})
    assert counts["delivered"] == len(cases) and counts["duplicated"] == 0, data
    for name, (_, want) in cases.items():
        if want is None:
            assert got[name].outputs == [100] * 5
        else:
            assert isinstance(got[name], want), (name, got[name])
