"""The watchdog and the refusal checks as plain functions (fast: no services, always run)."""

from __future__ import annotations

import signal
from concurrent.futures import Future

from workers.consumer import _valid_envelope
from workers.heartbeat import EXIT_HARD_TIME_LIMIT, EXIT_RECYCLE, Watchdog, WorkerState


def make(rss=100.0, max_rss=None):
    state = WorkerState("w", ["elastiq.debug"], 4, 1)
    state.ready_at = 1.0
    calls = {"drain": 0, "kill": [], "exit": []}
    dog = Watchdog(state, soft_s=4, hard_s=5, max_rss_mb=max_rss, on_drain=lambda: calls.__setitem__(
        "drain", calls["drain"] + 1), rss=lambda: rss, kill=lambda pid, sig: calls["kill"].append(sig),
        hard_exit=lambda code: calls["exit"].append(code), grace_s=0.01)
    return state, dog, calls


def test_soft_then_hard_limit():
    state, dog, calls = make()
    f = Future()
    state.track(f)
    t0 = state.inflight[id(f)]
    dog.check(t0 + 3.9)
    assert not state.draining and calls["drain"] == 0
    dog.check(t0 + 4.1)
    assert state.draining and calls["drain"] == 1 and "soft time limit" in state.stop_reason
    dog.check(t0 + 5.1)
    assert state.exit_code == EXIT_HARD_TIME_LIMIT and calls["kill"] == [signal.SIGQUIT]
    dog.check(t0 + 9)
    assert calls["kill"] == [signal.SIGQUIT], "signalled once"


def test_done_future_is_forgotten():
    state, dog, calls = make()
    f = Future()
    state.track(f)
    f.set_result(1)
    assert state.oldest_inflight_s() == 0.0
    dog.check()
    assert not state.draining


def test_is_oldest():
    state, _, _ = make()
    a, b = Future(), Future()
    state.track(a)
    state.track(b)
    assert state.is_oldest(a) and not state.is_oldest(b)


def test_memory_recycle_waits_for_running_jobs():
    state, dog, calls = make(rss=500, max_rss=100)
    state.enter("elastiq.debug")
    dog.check()
    assert state.draining and state.exit_code == EXIT_RECYCLE and calls["kill"] == []
    state.leave("elastiq.debug", True)
    dog.check()
    assert calls["kill"] == [signal.SIGTERM]


def test_memory_not_checked_before_ready():
    state, dog, calls = make(rss=500, max_rss=100)
    state.ready_at = None
    dog.check()
    assert not state.draining and state.exit_code is None


def test_envelope_shapes():
    ok = {"body": "", "headers": {}, "properties": {"delivery_info": {}, "delivery_tag": "t"}}
    assert _valid_envelope(ok) is None
    for bad in ([], "x", {}, {**ok, "headers": []}, {**ok, "body": 3},
                {**ok, "properties": {"delivery_info": {}}}, {**ok, "content-type": 5}):
        assert _valid_envelope(bad), bad
