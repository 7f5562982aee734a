"""The heartbeat document: the worker's writer and every reader share one typed shape.

The JSON it writes is the one workers wrote before the shape existed (same keys, same order,
same meaning) plus keys added since, so workers and readers of different builds read each other.
"""

from __future__ import annotations

import json

import pytest

from elastiq.errors import ElastiqError, WireFormatError
from elastiq.heartbeats import Heartbeat
from workers.state import WorkerState

# What a worker wrote before the typed shape (WorkerState.snapshot + the worker's extra), key for key.
OLD_KEYS = ["worker_id", "host", "pid", "queues", "slots", "threads", "busy", "busy_by_queue", "ready",
            "draining", "started_at", "ready_at", "cold_start_s", "rss_mb", "cpu_s", "done", "failed", "at",
            "stop_reason", "lost_ownership", "models", "engines", "heavy_modules", "batching"]
# Added since, each after the key named: an older reader keeps them as unknown keys.
ADDED = {"engine_build_s": "cold_start_s"}
KEYS = [k for old in OLD_KEYS for k in (old, *[a for a, after in ADDED.items() if after == old])]


def serving_state() -> WorkerState:
    st = WorkerState("w1", ["elastiq.minilm", "elastiq.debug"], slots=16, threads=2, started_at=100.0)
    st.ready_at = 103.5
    st.take("elastiq.minilm", 3)
    st.give_back("elastiq.minilm", "done")
    return st


EXTRA = {"models": ("debug", "minilm"), "engines": {"minilm": {"kind": "embed", "engine": "onnx"}},
         "heavy_modules": ("onnxruntime",), "batching": {"minilm": {"batches": 4}}}


def test_the_worker_writes_the_old_keys_in_the_old_order_and_reads_them_back():
    hb = serving_state().snapshot(EXTRA)
    doc = json.loads(hb.to_json())
    assert list(doc) == KEYS and doc["engine_build_s"] == 0.0
    assert doc["queues"] == ["elastiq.minilm", "elastiq.debug"] and doc["busy"] == 2
    assert doc["busy_by_queue"] == {"elastiq.minilm": 2} and doc["ready"] is True and doc["cold_start_s"] == 3.5
    assert doc["models"] == ["debug", "minilm"] and doc["engines"]["minilm"]["engine"] == "onnx"
    back = Heartbeat.from_json(hb.to_json())
    assert back == hb and back.to_json() == hb.to_json()
    assert back.serves("elastiq.debug") and not back.serves("elastiq.other")
    assert back.busy_on("elastiq.minilm") == 2 and back.busy_on("elastiq.debug") == 0
    assert back.engine("minilm") == {"kind": "embed", "engine": "onnx"} and back.engine("nope") == {}


def test_a_state_without_the_serving_extras_leaves_them_out():
    doc = serving_state().snapshot().to_dict()
    assert list(doc) == KEYS[:-4]
    assert Heartbeat.from_dict(doc).models is None


def test_a_partial_old_document_takes_the_defaults():
    hb = Heartbeat.from_json('{"worker_id": "pod-b", "busy": 2, "draining": false, "started_at": 90}')
    assert (hb.busy, hb.draining, hb.ready, hb.queues, hb.slots) == (2, False, False, (), None)
    assert hb.started_at == 90.0 and isinstance(hb.started_at, float)
    nulls = Heartbeat.from_dict({"worker_id": "w", "busy": None, "queues": None, "ready_at": None})
    assert (nulls.busy, nulls.queues, nulls.ready_at) == (0, (), None)


def test_keys_a_newer_worker_adds_are_kept_and_written_back():
    doc = {**serving_state().snapshot(EXTRA).to_dict(), "gpu": {"util": 0.5}}
    hb = Heartbeat.from_dict(doc)
    assert hb.extra == {"gpu": {"util": 0.5}}
    assert json.loads(hb.to_json()) == doc


@pytest.mark.parametrize("raw, what", [
    ("not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    ("[1, 2]", "JSON object"),
    ('{"busy": 1}', "worker_id"),
    ('{"worker_id": ""}', "worker_id"),
    ('{"worker_id": 7}', "worker_id"),
    ('{"worker_id": "w", "busy": "2"}', "busy is not an integer"),
    ('{"worker_id": "w", "busy": true}', "busy is not an integer"),
    ('{"worker_id": "w", "ready": 1}', "ready is not true/false"),
    ('{"worker_id": "w", "queues": "elastiq.minilm"}', "queues is not a list of strings"),
    ('{"worker_id": "w", "queues": [1]}', "queues is not a list of strings"),
    ('{"worker_id": "w", "started_at": "yesterday"}', "started_at is not a number"),
    ('{"worker_id": "w", "busy_by_queue": []}', "busy_by_queue is not an object"),
])
def test_a_malformed_document_is_a_typed_error(raw, what):
    with pytest.raises(WireFormatError, match=what) as err:
        Heartbeat.from_json(raw)
    assert isinstance(err.value, ElastiqError)


def test_read_heartbeats_skips_a_malformed_one(redis):
    from elastiq import contract
    from elastiq.heartbeats import read_heartbeat, read_heartbeats

    redis.set(contract.heartbeat_key("good"), Heartbeat("good", queues=("q",), ready=True).to_json())
    redis.set(contract.heartbeat_key("bad"), '{"worker_id": "bad", "busy": "lots"}')
    redis.set(contract.heartbeat_key("junk"), "}{")
    beats = read_heartbeats(redis)
    assert list(beats) == ["good"] and beats["good"].ready and beats["good"].serves("q")
    assert read_heartbeat(redis, "good") == beats["good"]
    assert read_heartbeat(redis, "bad") is None and read_heartbeat(redis, "missing") is None
