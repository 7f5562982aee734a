"""The autoscaler's decision row: what the controller writes is what every reader decodes."""

from __future__ import annotations

import json

import pytest

from autoscaler.timeline import TimelineWriter, read_timeline
from elastiq.decisions import DecisionRow
from elastiq.errors import WireFormatError

# The keys, in order, the controller wrote before the typed row (the timeline files on disk).
OLD_KEYS = ["t", "queue", "current", "desired", "reason", "action", "capacity_limited", "waiting", "in_flight",
            "oldest_age_s", "ready", "draining", "arrival_rate", "service_time_s"]


def row(**kw) -> DecisionRow:
    base = dict(t=1000.5, queue="elastiq.minilm", current=1, desired=3, reason="backlog 40 > 16/worker",
                action="up +2", waiting=40, in_flight=16, oldest_age_s=2.5, ready=1, arrival_rate=12.0,
                service_time_s=0.08)
    return DecisionRow(**{**base, **kw})


def test_a_row_round_trips_with_the_old_keys_in_order():
    r = row()
    doc = json.loads(json.dumps(r.to_dict()))
    assert list(doc) == OLD_KEYS + ["window_s"]             # old keys first, in order; new ones after
    assert DecisionRow.from_dict(doc) == r and r.decided and r.changes_pool
    assert not row(desired=1).changes_pool


def test_an_error_row_and_a_later_key_are_read():
    err = DecisionRow.from_dict({"t": 5, "queue": "q", "current": None, "desired": None,
                                 "reason": "backend error: x", "action": "error", "draining": 0, "gpu": 1})
    assert not err.decided and not err.changes_pool and err.t == 5.0 and err.extra == {"gpu": 1}
    assert err.to_dict()["gpu"] == 1


@pytest.mark.parametrize("doc, what", [
    ([], "JSON object"),
    ({"queue": "q"}, "t is not a number"),
    ({"t": "now", "queue": "q"}, "t is not a number"),
    ({"t": 1}, "queue is not a string"),
    ({"t": 1, "queue": "q", "current": 1.5}, "current is not an integer"),
    ({"t": 1, "queue": "q", "waiting": True}, "waiting is not an integer"),
    ({"t": 1, "queue": "q", "oldest_age_s": "2"}, "oldest_age_s is not a number"),
    ({"t": 1, "queue": "q", "capacity_limited": "no"}, "capacity_limited is not true/false"),
])
def test_a_malformed_row_is_a_typed_error(doc, what):
    with pytest.raises(WireFormatError, match=what):
        DecisionRow.from_dict(doc)


def test_the_timeline_file_reads_back_typed_rows(tmp_path):
    path = tmp_path / "t.jsonl"
    writer = TimelineWriter(path)
    writer(row().to_dict())
    writer(row(t=1001.5, action="hold", desired=1).to_dict())
    writer.close()
    assert read_timeline(path) == [row(), row(t=1001.5, action="hold", desired=1)]
    path.write_text(path.read_text() + '{"t": 1002, "queue": 7}\n')
    with pytest.raises(WireFormatError, match=r"t.jsonl:3: .*queue"):
        read_timeline(path)
