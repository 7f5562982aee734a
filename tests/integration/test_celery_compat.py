"""Celery where users meet it, against real workers: remote control (``inspect``,
``cancel_consumer``/``add_consumer``, ``shutdown``) from a plain Celery app, and task
events as Flower consumes them -- including a killed worker's jobs, which must not stay
STARTED once they are handed out again."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from celery.events.state import State

from elastiq import contract
from elastiq.celeryconf import make_celery
from elastiq.errors import JobFailedError
from elastiq.settings import Settings

pytestmark = pytest.mark.integration
Q = "elastiq.debug"


@pytest.fixture
def app(redis_url):
    a = make_celery(Settings(redis_url=redis_url), name="plain-celery-user")
    yield a
    a.close()


def wait_for(pred, timeout_s, what):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def test_inspect_cancel_add_consumer_and_shutdown(models_env, workers, client, app, redis):
    (wid,) = workers.start("debug", slots=4)
    inspect = app.control.inspect(destination=[wid], timeout=5)
    assert wait_for(lambda: inspect.ping(), 15, "a ping answer") == {wid: {"ok": "pong"}}
    assert inspect.registered()[wid] == [contract.TASK_NAME]
    assert [q["name"] for q in inspect.active_queues()[wid]] == [Q]
    stats = inspect.stats()[wid]
    assert stats["pool"]["max-concurrency"] == 4 and stats["pid"] == workers.pid(wid)

    reply = app.control.cancel_consumer(Q, destination=[wid], reply=True, timeout=5)
    assert reply == [{wid: {"ok": f"no longer consuming from {Q!r}"}}]
    job = client.submit("debug", ["waits"])
    time.sleep(1.5)                    # a negative check: nothing takes it in 1.5 s
    assert job.status() == contract.QUEUED and redis.llen(Q) == 1       # not taken while cancelled
    assert inspect.active_queues()[wid] == []
    app.control.add_consumer(Q, destination=[wid], reply=True, timeout=5)
    assert job.result(timeout=10).outputs == [5]

    app.control.shutdown(destination=[wid])
    assert workers.procs[wid].wait(30) == 0                             # a warm shutdown
    assert not redis.exists(contract.heartbeat_key(wid))


class EventTap(threading.Thread):
    """What Flower does: an EventReceiver feeding a celery.events.state.State."""

    def __init__(self, app):
        super().__init__(daemon=True)
        self.app, self.state, self.types = app, State(), []
        self.ready = threading.Event()

    def on_event(self, event):
        self.types.append((event["type"], event.get("uuid")))
        self.state.event(event)

    def run(self):
        with self.app.connection() as conn:
            recv = self.app.events.Receiver(conn, handlers={"*": self.on_event})
            self.ready.set()
            recv.capture(limit=None, timeout=None, wakeup=True)


def test_task_events_for_flower_and_no_job_left_started_on_a_dead_worker(models_env, workers, client, app,
                                                                        redis):
    tap = EventTap(app)
    tap.start()
    tap.ready.wait(10)
    a, b = workers.start("debug", n=2, slots=4)
    wait_for(lambda: {a, b} <= set(tap.state.workers) and all(tap.state.workers[w].alive for w in (a, b)),
             15, "worker-online/heartbeat events for both workers")
    # what Flower broadcasts while it runs (it does not wait for replies; the test does)
    replies = app.control.broadcast("enable_events", destination=[a, b], reply=True, timeout=5)
    assert sorted(next(iter(r)) for r in replies) == sorted([a, b])
    ok = client.submit("debug", ["fine"])
    bad = client.submit("debug", ["x"], fail="no")
    assert ok.result(timeout=10).outputs == [4]
    with pytest.raises(JobFailedError):
        bad.result(timeout=10)
    wait_for(lambda: tap.state.tasks.get(ok.id) and tap.state.tasks[ok.id].state == "SUCCESS", 10, "task-succeeded")
    wait_for(lambda: tap.state.tasks.get(bad.id) and tap.state.tasks[bad.id].state == "FAILURE", 10, "task-failed")
    kinds = {t for t, u in tap.types if u == ok.id}
    assert {"task-received", "task-started", "task-succeeded"} <= kinds

    # a worker dies holding jobs: once reaped they are retried, then succeed elsewhere
    long_jobs = client.submit_many("debug", [[f"long {i}"] for i in range(8)], sleep_ms=4000)
    wait_for(lambda: all(tap.state.tasks.get(j.id) and tap.state.tasks[j.id].state == "STARTED" for j in long_jobs),
             15, "all 8 started")
    held_by_a = [j.id for j in long_jobs if tap.state.tasks[j.id].worker.hostname == a]
    assert held_by_a
    workers.signal(a, signal.SIGKILL)
    for j in long_jobs:
        j.result(timeout=60)
    wait_for(lambda: all(tap.state.tasks[i].state == "SUCCESS" for i in held_by_a), 10, "their successes")
    retried = {u for t, u in tap.types if t == "task-retried"}
    assert set(held_by_a) <= retried, (held_by_a, retried)
    assert all(tap.state.tasks[i].worker.hostname == b for i in held_by_a)
    assert not [t for t in tap.state.tasks.values() if t.state == "STARTED"]
