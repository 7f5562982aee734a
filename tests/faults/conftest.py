"""Fault-injection helpers: short time limits, a result tap that counts every published
result, a supervisor that replaces dead workers, and the results JSON each scenario writes.

Each scenario counts: submitted, delivered (jobs with a result), executions (the job
record's ``deliveries``), lost, duplicated (jobs whose result was published more than
once), re-executed (jobs run more than once) and a recovery time. ``report.py`` renders
``tests/faults/results/*.json`` into docs/reliability.md.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from pathlib import Path

import pytest

from elastiq import contract

RESULTS_DIR = Path(os.environ.get("ELASTIQ_FAULTS_RESULTS", Path(__file__).parent / "results"))

# Short limits so a scenario is bounded: soft < hard, visibility > 2 x hard (settings check),
# and a 1 s unacked sweep so a dead worker's jobs come back within ~VT + 1 s; a delivery
# lost in a kill (never in unacked) is re-sent after 3 s.
FAST = {
    "ELASTIQ_JOB_SOFT_TIME_LIMIT_S": "4",
    "ELASTIQ_JOB_TIME_LIMIT_S": "5",
    "ELASTIQ_VISIBILITY_TIMEOUT_S": "12",
    "ELASTIQ_UNACKED_RESTORE_INTERVAL_S": "1",
    "ELASTIQ_MAX_DELIVERIES": "3",
    "ELASTIQ_HEARTBEAT_INTERVAL_S": "0.5",
    "ELASTIQ_HEARTBEAT_TTL_S": "3",
    "ELASTIQ_LOST_GRACE_S": "3",
    "ELASTIQ_LOST_SWEEP_INTERVAL_S": "1",
}


@pytest.fixture
def fast_env(monkeypatch, models_env, redis_url):
    """The same short limits for the client (this process) and the workers it starts."""
    for k, v in FAST.items():
        monkeypatch.setenv(k, v)
    return dict(FAST)


def record(name: str, **fields) -> dict:
    """Write one scenario's counts to ``results/<name>.json`` (read by report.py)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data = {"scenario": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    return data


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
                time.sleep(0.2)
                try:
                    self.pubsub.psubscribe("celery-task-meta-*")
                except Exception:  # noqa: BLE001
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
        except Exception:  # noqa: BLE001
            pass

    def duplicated(self, ids) -> list[str]:
        return [i for i in ids if len(self.by_id.get(i, [])) > 1]


@pytest.fixture
def tap(redis):
    t = ResultTap(redis)
    t.start()
    time.sleep(0.2)
    yield t
    t.stop()


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


def republished(redis, ids) -> int:
    """Jobs the lost-delivery sweeper had to send again (workers/sweeper.py)."""
    pipe = redis.pipeline(transaction=False)
    for i in ids:
        pipe.hget(contract.job_key(i), "republished")
    return sum(1 for v in pipe.execute() if v)


def unacked(redis) -> int:
    return int(redis.hlen("unacked"))


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
