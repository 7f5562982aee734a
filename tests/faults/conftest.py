"""Fault-injection helpers: production defaults, a result tap that counts every published
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


def reaped(redis, ids) -> int:
    """Jobs a reaper handed out again because the worker holding them died."""
    pipe = redis.pipeline(transaction=False)
    for i in ids:
        pipe.hget(contract.job_key(i), "reaped")
    return sum(1 for v in pipe.execute() if v)


def held(redis) -> int:
    """Jobs held by any worker (live or dead): 0 once everything is answered."""
    return sum(int(redis.hlen(contract.held_key(w))) for w in redis.smembers(contract.HOLDERS_KEY))


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
