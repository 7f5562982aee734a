"""Fault-injection helpers: production defaults, a result tap that counts every published
result, a supervisor that replaces dead workers, and the results JSON each scenario writes.

Each scenario is marked ``@pytest.mark.scenario(name, title)`` and hands its figures to
the ``scenario`` fixture (``scenario.record(**figures)``). The figures are written to
``results/<name>.json`` only when the test has *passed* -- a failing run leaves the last
passing figures untouched -- with the git commit they were measured at. Every run, pass
or fail, writes ``results/outcomes/<name>.json`` (passed, commit, time), which
``report.py`` shows in its pass/fail column.

Job counts come from observers independent of the code under test (:func:`tally`): the
result tap (every result PUBLISHed by a worker), the stored result keys, and the queue
lists -- never from literals or the client's own bookkeeping. The job record's
``deliveries`` counts executions (re-executed: run more than once).
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from benchmarks.provenance import git_commit
from elastiq import contract

RESULTS_DIR = Path(os.environ.get("ELASTIQ_FAULTS_RESULTS", Path(__file__).parent / "results"))

# Every scenario runs at the production defaults (elastiq/settings.py) except one: a
# forward pass that never returns (`!hang`) is bounded only by the job time limits, 120 s /
# 180 s by default, so that scenario alone shortens them (and says so in its table row).
SHORT_TIME_LIMITS = {
    "ELASTIQ_JOB_SOFT_TIME_LIMIT_S": "4",
    "ELASTIQ_JOB_TIME_LIMIT_S": "5",
}


@pytest.fixture
def prod_env(monkeypatch, models_env, redis_url):
    """Production defaults for the client (this process) and the workers it starts."""
    for k in list(os.environ):
        if k.startswith("ELASTIQ_") and k not in ("ELASTIQ_MODELS", "ELASTIQ_REDIS_URL"):
            monkeypatch.delenv(k)
    return {}


@pytest.fixture
def short_time_limits(monkeypatch, prod_env):
    for k, v in SHORT_TIME_LIMITS.items():
        monkeypatch.setenv(k, v)
    return dict(SHORT_TIME_LIMITS)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


class Scenario:
    """One scenario's figures, kept until the test's outcome is known (see module doc)."""

    def __init__(self, name: str, title: str, results_dir: Path):
        self.name, self.title, self.results_dir = name, title, results_dir
        self.figures: dict | None = None

    def record(self, **fields) -> dict:
        """Keep the figures; written by :meth:`finish` only if the test passes."""
        self.figures = {"scenario": self.name, "title": self.title, **fields}
        return self.figures

    def finish(self, passed: bool, commit: str, at: str) -> None:
        outcome = {"scenario": self.name, "title": self.title, "passed": passed, "commit": commit, "at": at}
        write_json(self.results_dir / "outcomes" / f"{self.name}.json", outcome)
        if passed and self.figures is not None:
            write_json(self.results_dir / f"{self.name}.json", {**self.figures, **outcome})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so a fixture can see whether the test passed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def scenario(request):
    marker = request.node.get_closest_marker("scenario")
    assert marker is not None, "a test using `scenario` is marked @pytest.mark.scenario(name, title)"
    s = Scenario(marker.args[0], marker.args[1] if len(marker.args) > 1 else "", RESULTS_DIR)
    yield s
    call = getattr(request.node, "rep_call", None)
    passed = call is not None and call.passed
    s.finish(passed and s.figures is not None, git_commit(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if passed and s.figures is None:
        pytest.fail(f"scenario {s.name} passed without recording its figures")


class ResultTap(threading.Thread):
    """Counts every result the workers publish (Celery's Redis backend PUBLISHes each
    stored result on ``celery-task-meta-<id>``), by job id and status."""

    def __init__(self, redis):
        super().__init__(name="result-tap", daemon=True)
        self.pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("celery-task-meta-*")
        self.by_id: dict[str, list[str]] = collections.defaultdict(list)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                msg = self.pubsub.get_message(timeout=0.2)
            except Exception:  # noqa: BLE001 - Redis restarts in some scenarios
                time.sleep(0.2)            # back off before subscribing again
                try:
                    self.pubsub.psubscribe("celery-task-meta-*")
                except Exception:  # noqa: BLE001 - Redis still down: the loop tries again
                    pass
                continue
            if not msg or msg.get("type") != "pmessage":
                continue
            try:
                meta = json.loads(msg["data"])
            except ValueError:
                continue
            self.by_id[meta.get("task_id")].append(meta.get("status"))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        try:
            self.pubsub.close()
        except Exception:  # noqa: BLE001 - closing, best effort
            pass

    def duplicated(self, ids) -> list[str]:
        return [i for i in ids if len(self.by_id.get(i, [])) > 1]

    def flush(self, redis, timeout_s: float = 10.0) -> None:
        """Return once the tap is subscribed and has counted every result published before
        this call: Redis delivers a subscriber's messages in publish order, so a marker
        published now reaches the tap after all of them (republished until seen, in case the
        tap was resubscribing)."""
        marker = f"tap-flush-{uuid.uuid4().hex}"

        def seen() -> bool:
            if marker not in self.by_id:
                redis.publish(contract.result_key(marker), json.dumps({"task_id": marker, "status": "MARKER"}))
            return marker in self.by_id

        wait_for(seen, timeout_s, interval_s=0.05, what="the result tap to catch up")


@pytest.fixture
def tap(redis):
    t = ResultTap(redis)
    t.start()
    t.flush(redis)          # subscribed before the test publishes anything
    yield t
    t.stop()


def tally(tap: ResultTap, redis, ids, queue: str | None = None) -> dict:
    """Job counts from observers outside the code under test.

    ``delivered``: jobs whose result (success or a typed failure) was published (the tap)
    or is stored in the result backend; ``lost``: jobs with neither; ``failed``: delivered
    with a FAILURE; ``duplicated``: results published more than once; ``left_in_queue``:
    messages still in the queue's lists (``queue`` given)."""
    ids = list(ids)
    pipe = redis.pipeline(transaction=False)
    for i in ids:
        pipe.get(f"celery-task-meta-{i}")
    stored = {}
    for i, raw in zip(ids, pipe.execute()):
        try:
            stored[i] = json.loads(raw).get("status") if raw else None
        except ValueError:
            stored[i] = None
    statuses = {i: list(tap.by_id.get(i, [])) or ([stored[i]] if stored[i] else []) for i in ids}
    out = {"submitted": len(ids), "delivered": sum(1 for v in statuses.values() if v),
           "lost": sum(1 for v in statuses.values() if not v),
           "failed": sum(1 for v in statuses.values() if v and "SUCCESS" not in v),
           "duplicated": sum(1 for i in ids if len(tap.by_id.get(i, [])) > 1)}
    if queue is not None:
        out["left_in_queue"] = queued(redis, queue)
    return out


def executions(redis, ids) -> dict[str, int]:
    pipe = redis.pipeline(transaction=False)
    for i in ids:
        pipe.hget(contract.job_key(i), "deliveries")
    return {i: int(v or 0) for i, v in zip(ids, pipe.execute())}


def records(redis, ids, *fields) -> dict[str, dict]:
    pipe = redis.pipeline(transaction=False)
    for i in ids:
        pipe.hgetall(contract.job_key(i))
    return dict(zip(ids, pipe.execute()))


def reaped(redis, ids) -> int:
    """Jobs a reaper handed out again because the worker holding them died."""
    pipe = redis.pipeline(transaction=False)
    for i in ids:
        pipe.hget(contract.job_key(i), "reaped")
    return sum(1 for v in pipe.execute() if v)


def held(redis) -> int:
    """Jobs held by any worker (live or dead): 0 once everything is answered."""
    return sum(int(redis.hlen(contract.held_key(w))) for w in redis.smembers(contract.HOLDERS_KEY))


def queued(redis, queue: str) -> int:
    """Messages waiting in ``queue``'s lists."""
    return sum(int(redis.llen(k)) for k in contract.queue_keys(queue))


def settle(tap: ResultTap, redis, queue: str, timeout_s: float = 30.0) -> None:
    """Wait until nothing is left that could still publish a result -- no job held by any
    worker (a commit un-holds and publishes in one script), none waiting in ``queue`` -- and
    the tap has counted every result published: what "sleep a while for a late duplicate"
    meant, tied to the observers instead of a duration."""
    wait_for(lambda: held(redis) == 0 and queued(redis, queue) == 0, timeout_s, interval_s=0.05,
             what=f"no job held, none queued on {queue}")
    tap.flush(redis)


def wait_for(pred, timeout_s: float, interval_s: float = 0.1, what: str = "condition"):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def exit_code(pool, wid: str, timeout_s: float) -> int | None:
    p = pool.procs[wid]
    try:
        return p.wait(timeout_s)
    except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
        return None


class Supervisor(threading.Thread):
    """Replaces any worker process of ``pool`` that has exited (what the autoscaler's
    reconcile or compose ``restart:`` does), recording each exit code."""

    def __init__(self, pool, models: str, **start_kw):
        super().__init__(name="supervisor", daemon=True)
        self.pool, self.models, self.start_kw = pool, models, start_kw
        self.exits: list[tuple[str, int, float]] = []
        self.started: list[str] = []
        self._halt = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self._halt.wait(0.2):
            for wid, p in list(self.pool.procs.items()):
                if p.poll() is not None and wid not in {e[0] for e in self.exits}:
                    with self.lock:
                        self.exits.append((wid, p.returncode, time.time()))
                        if not self._halt.is_set():
                            self.started += self.pool.start(self.models, n=1, wait=False, **self.start_kw)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
