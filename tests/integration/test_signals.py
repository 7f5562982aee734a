"""Signals against a real Redis: what KEDA's one-list LLEN misses, elastiq counts."""

from __future__ import annotations

import json
import time

import pytest

from autoscaler.signals import Signals, waiting_and_oldest
from elastiq import contract
from elastiq.heartbeats import Heartbeat

pytestmark = pytest.mark.integration
Q = "elastiq.debug"


def test_priority_sub_lists_and_oldest_age_are_counted(models_env, client, redis):
    client.submit_many("debug", [["a"], ["b"]])                 # priority 0: the plain list
    client.submit("debug", ["c"], priority=6)                  # a sub-list KEDA never reads
    client.submit("debug", ["d"], priority=9)
    assert redis.llen(Q) == 2                                  # what KEDA's scaler would see
    now = time.time() + 5
    waiting, oldest = waiting_and_oldest(redis, Q, now)
    assert waiting == 4
    assert 4.9 <= oldest <= 6.0


def test_empty_queue_has_age_zero_and_unreadable_redis_is_unknown(redis, redis_server):
    assert waiting_and_oldest(redis, Q, time.time()) == (0, 0.0)
    from elastiq.redisconn import redis_client
    from elastiq.settings import Settings

    dead = redis_client(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert waiting_and_oldest(dead, Q, time.time()) == (None, None)
    snap = Signals(dead, host=lambda: {}).snapshot(Q, [], time.time())
    assert snap.queue.waiting is None and snap.queue.in_flight is None   # unknown, never zero
    assert snap.queue.worker_info is None                                # unknown, not "no workers"


def test_in_flight_is_the_jobs_live_workers_hold(models_env, workers, client, redis):
    (wid,) = workers.start("debug", slots=4)
    jobs = client.submit_many("debug", [["x"]] * 4, sleep_ms=3000)
    deadline = time.time() + 10
    snap = None
    while time.time() < deadline:
        snap = Signals(redis).snapshot(Q, [wid], time.time())
        if snap.queue.in_flight == 4 and snap.queue.busy_workers == 1:   # busy: from the heartbeat
            break
        time.sleep(0.2)
    assert snap.queue.waiting == 0          # LLEN says nothing is there ...
    assert snap.queue.in_flight == 4        # ... but four jobs are running
    assert snap.queue.busy_workers == 1 and snap.queue.slots_per_worker == 4
    assert snap.queue.cold_start_s and snap.queue.cold_start_s > 0
    assert snap.host.worker_rss_mb and snap.host.worker_rss_mb > 10
    (info,) = snap.queue.worker_info                          # per replica, from its heartbeat
    assert info.worker_id == wid and info.ready and info.cold_start_s == snap.queue.cold_start_s
    assert time.time() - 60 < info.started_at < time.time()
    for j in jobs:
        j.result(timeout=20)


def test_arrival_rate_and_service_time_are_smoothed_from_counters(redis):
    s = Signals(redis, host=lambda: {})
    redis.hset(contract.stats_key(Q), "started", 0)
    s.snapshot(Q, [], 100.0, beats={})
    redis.hset(contract.stats_key(Q), "started", 50)        # 50 starts in 10 s
    beat = Heartbeat("w", queues=(Q,), busy_by_queue={Q: 10}, slots=16)
    redis.set(contract.heartbeat_key("w"), beat.to_json())                # a live worker ...
    redis.sadd(contract.HOLDERS_KEY, "w")                                 # ... holding 10 jobs
    redis.hset(contract.held_key("w"), mapping={f"{Q}\n{i}": "{}" for i in range(10)})
    for _ in range(5):
        redis.lpush(Q, json.dumps({"headers": {contract.HEADER_SUBMITTED_AT: 105.0}}))
    snap = s.snapshot(Q, ["w"], 110.0, beats={"w": beat})
    q = snap.queue
    assert q.arrival_rate == pytest.approx(5.5)              # (50 started + 5 queued) / 10 s
    assert q.service_time_s == pytest.approx(2.0)            # 10 in service / 5 per s
    assert q.oldest_age_s == pytest.approx(5.0)


def test_a_replica_without_a_heartbeat_is_loading_since_the_backends_start(redis):
    s = Signals(redis, host=lambda: {})
    beat = Heartbeat("w1", queues=(Q,), ready=True, started_at=90.0, cold_start_s=4.0)
    snap = s.snapshot(Q, ["w1", "w2"], 100.0, beats={"w1": beat}, started={"w1": 89.0, "w2": 98.5})
    w1, w2 = snap.queue.worker_info
    assert (w1.started_at, w1.ready, w1.cold_start_s) == (90.0, True, 4.0)   # the heartbeat wins
    assert (w2.started_at, w2.ready, w2.cold_start_s) == (98.5, False, None)


def test_the_queues_cold_start_is_the_one_measured_last(redis):
    # the first worker exported the engine (slow); the one ready after it loaded from the cache
    s = Signals(redis, host=lambda: {})
    first = Heartbeat("w1", queues=(Q,), ready=True, started_at=0.0, ready_at=7.8, cold_start_s=7.8)
    second = Heartbeat("w2", queues=(Q,), ready=True, started_at=50.0, ready_at=50.4, cold_start_s=0.4)
    assert s.snapshot(Q, ["w1"], 10.0, beats={"w1": first}).queue.cold_start_s == 7.8
    assert s.snapshot(Q, ["w1", "w2"], 60.0, beats={"w1": first, "w2": second}).queue.cold_start_s == 0.4
    assert s.snapshot(Q, ["w1"], 70.0, beats={}).queue.cold_start_s == 0.4     # none ready now: the last known
    # w2 drained and gone: the first worker is the only one left, its old 7.8 s is not news
    assert s.snapshot(Q, ["w1"], 80.0, beats={"w1": first}).queue.cold_start_s == 0.4


def test_a_new_worker_is_judged_without_the_first_ones_engine_export(redis):
    # a pool of one whose worker exported the onnx engine (16 s of its 16.4 s cold start): the next
    # worker reads the cache, so the queue's cold start is the 0.4 s, not 16.4 s (a first `make demo`)
    s = Signals(redis, host=lambda: {})
    first = Heartbeat("w1", queues=(Q,), ready=True, started_at=0.0, ready_at=16.4, cold_start_s=16.4,
                      engine_build_s=16.0)
    assert s.snapshot(Q, ["w1"], 20.0, beats={"w1": first}).queue.cold_start_s == pytest.approx(0.4)
    old = Heartbeat("w1", queues=(Q,), ready=True, started_at=0.0, ready_at=7.8, cold_start_s=7.8)
    fresh = Signals(redis, host=lambda: {})                                   # an older worker: all of it
    assert fresh.snapshot(Q, ["w1"], 20.0, beats={"w1": old}).queue.cold_start_s == 7.8
