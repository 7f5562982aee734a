"""The job record hash: one spelling of its fields, partial writes, typed reads."""

from __future__ import annotations

import pytest

from elastiq import contract, jobrecord
from elastiq.errors import WireFormatError
from elastiq.jobrecord import JobRecord


def test_a_full_record_round_trips_through_the_hash():
    rec = JobRecord(state=contract.STARTED, model="minilm", submitted_at=1712345678.125, deliveries=2,
                    worker="w2", first_worker="w1", reaped=1, alone="w2", cancelled=True, reason="poison",
                    progress={"phase": "train", "step": 3})
    h = rec.to_hash()
    assert all(isinstance(v, str) for v in h.values())
    assert h[jobrecord.SUBMITTED_AT] == "1712345678.125" and h[jobrecord.CANCELLED] == "1"
    assert JobRecord.from_hash(h) == rec


def test_a_partial_write_names_only_what_the_writer_knows():
    assert JobRecord(state=contract.DEAD, reason="too many deliveries").to_hash() == {
        "state": "dead", "reason": "too many deliveries"}
    assert JobRecord(deliveries=0).to_hash() == {"deliveries": "0"}       # 0 is a value, not "unset"
    assert JobRecord().to_hash() == {}


def test_what_the_producer_script_writes_reads_back():
    """The fields producer/publish.py's Lua writes (repr of the submit time), as HGETALL returns them."""
    rec = JobRecord.from_hash({"state": "queued", "model": "minilm", "submitted_at": repr(1712345678.5),
                               "deliveries": "1", "unknown_later_field": "x"})
    assert (rec.status, rec.model, rec.submitted_at, rec.deliveries) == ("queued", "minilm", 1712345678.5, 1)
    assert rec.worker is None and rec.cancelled is False and rec.progress is None
    assert JobRecord.from_hash({}).status == contract.UNKNOWN


@pytest.mark.parametrize("h, what", [
    ({"deliveries": "two"}, "deliveries is not an integer"),
    ({"deliveries": "1.5"}, "deliveries is not an integer"),
    ({"reaped": ""}, "reaped is not an integer"),
    ({"submitted_at": "yesterday"}, "submitted_at is not a number"),
    ({"progress": "{not json"}, "progress is not a JSON object"),
    ({"progress": "[1, 2]"}, "progress is not a JSON object"),
])
def test_a_malformed_field_is_a_typed_error(h, what):
    with pytest.raises(WireFormatError, match=what):
        JobRecord.from_hash(h)


def test_lua_scripts_get_the_same_spelling():
    assert jobrecord.lua("redis.call('HSET', rec, '$STATE', '$QUEUED', '$FIRST_WORKER', w)") == \
        "redis.call('HSET', rec, 'state', 'queued', 'first_worker', w)"
    assert jobrecord.lua("string.match(f, '^(.*)\\n[^\\n]*$')") == "string.match(f, '^(.*)\\n[^\\n]*$')"
    with pytest.raises(KeyError):
        jobrecord.lua("'$STAET'")


def test_read_record_reads_what_the_scripts_wrote(redis):
    from elastiq.reservations import Reservations
    from producer.publish import Publisher

    Publisher(redis, 60).publish("elastiq.m", "m", 1000.25, [("j1", '{"headers": {"id": "j1"}}')])
    redis.set(contract.heartbeat_key("w"), "{}")
    [held] = Reservations(redis).reserve("w", ["elastiq.m"], 1, 1001.0, 0)
    rec = jobrecord.read_record(redis, "j1")
    assert (rec.state, rec.model, rec.submitted_at) == (contract.STARTED, "m", 1000.25)
    assert (rec.deliveries, rec.worker, rec.first_worker, held.deliveries) == (1, "w", "w", 1)
    assert jobrecord.read_record(redis, "nope") == JobRecord()
