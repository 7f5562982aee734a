"""The lost-delivery sweeper against a real Redis, a real Celery message and a real worker.

A worker SIGKILLed between kombu's BRPOP and its unacked write takes the message with it.
Here that is reproduced exactly -- the message is popped off the queue list and never
written anywhere -- and the sweeper must send it again, once, while it leaves alone the
jobs that still wait in the list or sit in a worker's unacked set.
"""

from __future__ import annotations

import json
import time

import pytest

from elastiq import contract
from elastiq.celeryconf import make_celery
from elastiq.settings import Settings
from workers.sweeper import LostJobSweeper, celery_sender

pytestmark = pytest.mark.integration
Q = "elastiq.debug"
GRACE = 5.0


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


@pytest.fixture
def sweeper(redis, redis_url):
    app = make_celery(Settings(redis_url=redis_url), name="sweeper-test")
    clock = Clock()
    naps = []
    s = LostJobSweeper(redis, celery_sender(app), [Q], owner="test", grace_s=GRACE, interval_s=1,
                       confirm_s=0.5, clock=clock, sleep=naps.append)
    s.clock_ = clock
    s.naps = naps
    return s


def _take(redis, *, into_unacked: bool) -> str:
    """What a worker's BRPOP does: the oldest message leaves the list. ``into_unacked``
    also does what kombu does next (the step a SIGKILL can prevent)."""
    raw = redis.rpop(Q)
    msg = json.loads(raw)
    if into_unacked:
        tag = msg["properties"]["delivery_tag"]
        redis.hset(contract.UNACKED_KEY, tag, json.dumps([msg, "", Q]))
    return msg["headers"]["id"]


def test_a_job_lost_in_delivery_is_sent_again_once(models_env, redis, client, workers, sweeper):
    jobs = client.submit_many("debug", [["lost"], ["held"], ["waiting"]])
    lost = _take(redis, into_unacked=False)        # the worker died before the unacked write
    held = _take(redis, into_unacked=True)         # a live worker holds this one
    assert [lost, held] == [jobs[0].id, jobs[1].id]

    sweeper.clock_.now += GRACE + 1
    assert sweeper.sweep_once() == []              # "waiting" (same batch) is still in the list:
    assert redis.llen(Q) == 1                      # the lost one cannot be told apart yet

    redis.rpop(Q)                                  # the batch's last job leaves the list
    redis.hset(contract.job_key(jobs[2].id), "state", contract.STARTED)
    assert sweeper.sweep_once() == [lost]          # not `held`: it is in unacked
    assert sweeper.naps == [0.5]                   # confirmed after a pause
    record = redis.hgetall(contract.job_key(lost))
    assert record["republished"] == "1" and record["state"] == contract.QUEUED
    again = json.loads(redis.lindex(Q, 0))
    assert again["headers"]["id"] == lost
    assert float(again["headers"][contract.HEADER_REPUBLISHED_AT]) == sweeper.clock_.now
    assert float(again["headers"][contract.HEADER_SUBMITTED_AT]) == pytest.approx(time.time(), abs=30)

    sweeper.clock_.now += GRACE + 1                # it is waiting in the list now: not again
    assert sweeper.sweep_once() == []

    workers.start("debug", slots=2)                # a real worker runs the re-sent message
    result = jobs[0].result(timeout=30)
    assert result.outputs == [len("lost")]
    assert int(redis.hget(contract.job_key(lost), "deliveries")) == 1
    assert redis.zscore(contract.pending_key(Q), lost) is None     # started: no longer pending
    assert redis.hget(contract.job_key(lost), "payload") is None


def test_old_jobs_waiting_in_a_long_backlog_are_left_alone(models_env, redis, client, sweeper):
    client.submit_many("debug", [[f"w {i}"] for i in range(20)])
    sweeper.clock_.now += 10 * GRACE
    assert sweeper.sweep_once() == []
    assert redis.llen(Q) == 20
    assert redis.zcard(contract.pending_key(Q)) == 20


def test_one_sweeper_at_a_time(redis, sweeper):
    redis.set(contract.SWEEP_LOCK_KEY, "another-worker", ex=30)
    client_like = [redis.zadd(contract.pending_key(Q), {"x": 0})]
    assert client_like and sweeper.sweep_once() == []
    assert redis.get(contract.SWEEP_LOCK_KEY) == "another-worker"   # not released by us
