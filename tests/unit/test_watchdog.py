"""The watchdog as a plain object: injected clock, stub executors (fast: no services)."""

from __future__ import annotations

from concurrent.futures import Future

from elastiq.errors import JobTimeoutError
from workers.state import EXIT_HARD_TIME_LIMIT, EXIT_RECYCLE, WorkerState
from workers.watchdog import Watchdog


class StubExecutor:
    """What the watchdog sees of a batcher: the running pass, and what waits behind it."""

    def __init__(self):
        self.current, self.current_since, self.pending = [], None, []

    def fail_current(self, exc):
        for f in self.current:
            f.set_exception(exc)
        return list(self.current)

    def take_pending(self):
        got, self.pending = self.pending, []
        return got


def make(rss=100.0, max_rss=None):
    state = WorkerState("w", ["elastiq.debug"], 4, 1)
    state.ready_at = 1.0
    ex = StubExecutor()
    calls = {"given_back": [], "stop": [], "exit": []}
    dog = Watchdog(state, [ex], soft_s=4, hard_s=5, max_rss_mb=max_rss, rss=lambda: rss,
                   give_back=calls["given_back"].extend, stop=calls["stop"].append,
                   hard_exit=calls["exit"].append, monotonic=lambda: 0.0)
    return state, ex, dog, calls


def test_soft_limit_fails_the_stuck_pass_gives_back_the_rest_then_hard_limit_exits():
    state, ex, dog, calls = make()
    stuck, behind = Future(), Future()
    ex.current, ex.current_since, ex.pending = [stuck], 100.0, [behind]
    dog.check(103.9)
    assert not state.draining and not stuck.done() and calls["given_back"] == []
    dog.check(104.1)
    assert state.draining and "soft time limit" in state.stop_reason
    assert isinstance(stuck.exception(), JobTimeoutError)
    assert calls["given_back"] == [behind] and calls["exit"] == []
    dog.check(104.5)                                     # the same stuck pass: not failed twice
    assert calls["given_back"] == [behind]
    dog.check(105.1)
    assert calls["exit"] == [EXIT_HARD_TIME_LIMIT] and state.exit_code == EXIT_HARD_TIME_LIMIT


def test_an_idle_worker_is_left_alone():
    state, ex, dog, calls = make()
    dog.check(1e9)
    assert not state.draining and calls == {"given_back": [], "stop": [], "exit": []}


def test_memory_recycle_waits_for_held_jobs():
    state, _, dog, calls = make(rss=500, max_rss=100)
    state.take("elastiq.debug")
    dog.check(0.0)
    assert state.draining and state.exit_code == EXIT_RECYCLE and calls["stop"] == []
    state.give_back("elastiq.debug", "done")
    dog.check(0.0)
    assert calls["stop"] == [EXIT_RECYCLE]


def test_memory_not_checked_before_ready():
    state, _, dog, _ = make(rss=500, max_rss=100)
    state.ready_at = None
    dog.check(0.0)
    assert not state.draining and state.exit_code is None
