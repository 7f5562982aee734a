"""The one message builder and reader (pure: no services)."""

from __future__ import annotations

import base64
import json

import pytest

from elastiq import contract, messages


def test_a_built_job_reads_back_and_goes_to_kombus_priority_list():
    key, raw = messages.job_message("id-1", "minilm", ["a"], {"normalize": False}, submitted_at=5.0,
                                    deadline=9.0, priority=5)
    assert key == "elastiq.minilm" + contract.PRIORITY_SEP + "3"       # kombu: steps 0, 3, 6, 9
    msg = messages.decode(raw)
    assert (msg.job_id, msg.task, msg.queue) == ("id-1", contract.TASK_NAME, "elastiq.minilm")
    assert msg.kwargs == {"model": "minilm", "inputs": ["a"], "params": {"normalize": False}}
    assert msg.header_float(contract.HEADER_DEADLINE) == 9.0 and messages.submitted_at(raw) == 5.0
    assert [messages.list_for("q", p) for p in (None, 0, 2, 3, 8, 9)] == [
        "q", "q", "q", f"q{contract.PRIORITY_SEP}3", f"q{contract.PRIORITY_SEP}6", f"q{contract.PRIORITY_SEP}9"]


def envelope(body, **over):
    env = json.loads(messages.task_message("x", {}, queue="q"))
    env["body"] = base64.b64encode(json.dumps(body).encode()).decode()
    env.update(over)
    return json.dumps(env)


@pytest.mark.parametrize("raw, reason", [
    ("not json", "not JSON"),
    ("[1, 2]", "JSON list"),
    (json.dumps({"headers": {}}), "no task header"),
    (envelope([[], {}, {}], **{"content-type": "application/x-python-serialize"}), "JSON only"),
    (envelope([[], {}]), "[args, kwargs, embed]"),
    (envelope([[], [], {}]), "kwargs are not a mapping"),
    (envelope([[], {}, {"callbacks": [{"task": "celery.group"}]}]), "callbacks"),
])
def test_every_bad_item_is_a_typed_refusal(raw, reason):
    with pytest.raises(messages.BadMessage, match=reason.replace("[", r"\[").replace("]", r"\]")):
        messages.decode(raw)


def test_size_is_checked_before_decoding_and_the_id_read_from_the_tail():
    from elastiq.settings import Limits
    from workers import admission

    limits = Limits(max_message_bytes=1000)
    _, raw = messages.job_message("big-1", "minilm", ["x" * 200_000], {}, submitted_at=1.0)
    assert admission.size_refusal(raw, limits) and "not decoded" in admission.size_refusal(raw, limits)
    assert admission.id_hint(raw) == "big-1"                      # headers come after the body
    _, ok = messages.job_message("ok-1", "minilm", ["x" * 900], {}, submitted_at=1.0)
    assert admission.size_refusal(ok, limits) is None
