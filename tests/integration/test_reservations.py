"""Owned reservations against a real Redis: each step atomic, each job restored once."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from elastiq import contract, messages
from elastiq.jobrecord import JobRecord, read_record
from elastiq.reservations import Outcome, Reservations, orphaned

Q = "elastiq.minilm"


@pytest.fixture
def store(redis):
    return Reservations(redis, record_ttl_s=600, result_ttl_s=600, max_bytes=1 << 22)


def push(redis, n, priority=None, model="minilm", submitted_at=1000.0):
    ids = []
    for i in range(n):
        job_id = str(uuid.uuid4())
        key, raw = messages.job_message(job_id, model, [f"text {i}"], {}, submitted_at=submitted_at + i,
                                        priority=priority)
        redis.lpush(key, raw)
        ids.append(job_id)
    return ids


def alive(redis, worker, ttl_s=30):
    redis.set(contract.heartbeat_key(worker), "{}", ex=ttl_s)


def ids_of(held):
    return [json.loads(h.raw)["headers"]["id"] for h in held]


def test_reserve_needs_a_live_heartbeat_and_takes_in_fifo_order(redis, store):
    ids = push(redis, 5)
    assert store.reserve("w1", [Q], 3, now=1.0, seq=0) is None          # no heartbeat: nothing taken
    assert redis.llen(Q) == 5
    alive(redis, "w1")
    held = store.reserve("w1", [Q], 3, now=1.0, seq=0)
    assert ids_of(held) == ids[:3]                                         # oldest first
    assert [h.deliveries for h in held] == [1, 1, 1]
    assert redis.llen(Q) == 2 and redis.hlen(contract.held_key("w1")) == 3
    assert read_record(redis, ids[0]).worker == "w1"
    assert int(redis.hget(contract.stats_key(Q), "started")) == 3
    assert "w1" in store.holders()


def test_priority_lists_first_and_round_robin_over_queues(redis, store):
    low = push(redis, 2, priority=9)
    normal = push(redis, 2)
    other = push(redis, 2, model="other")
    alive(redis, "w1")
    held = store.reserve("w1", [Q, "elastiq.other"], 6, now=1.0, seq=0)
    got = ids_of(held)
    assert got[:2] == [normal[0], other[0]] and got[2:4] == [normal[1], other[1]]   # fair over queues
    assert got[4:] == low                                                  # then the lower priority
    assert store.reserve("w1", [Q], 4, now=1.0, seq=6) == []


def test_commit_answers_once_and_only_from_the_owner(redis, store):
    ids = push(redis, 2)
    alive(redis, "w1")
    held = store.reserve("w1", [Q], 2, now=1.0, seq=0)
    meta = json.dumps({"status": "SUCCESS", "result": 1, "task_id": ids[0]})
    pubsub = redis.pubsub()
    pubsub.subscribe(contract.result_key(ids[0]))
    pubsub.get_message(timeout=1)
    assert store.commit("w1", [Outcome(held[0].field, ids[0], meta, queue=Q)]) == [True]
    assert redis.get(contract.result_key(ids[0])) == meta
    assert pubsub.get_message(timeout=1)["data"] == meta
    assert read_record(redis, ids[0]).state == contract.DONE
    # a second commit of the same reservation is refused: it is no longer held
    assert store.commit("w1", [Outcome(held[0].field, ids[0], meta, queue=Q)]) == [False]
    # another worker cannot answer what w1 holds
    assert store.commit("w2", [Outcome(held[1].field, ids[1], meta, queue=Q)]) == [False]
    assert redis.get(contract.result_key(ids[1])) is None


def test_release_puts_jobs_back_in_front_and_takes_the_delivery_back(redis, store):
    ids = push(redis, 3)
    alive(redis, "w1")
    held = store.reserve("w1", [Q], 2, now=1.0, seq=0)
    assert store.release("w1", [h.field for h in held]) == 2
    again = store.reserve("w1", [Q], 3, now=1.0, seq=2)
    assert set(ids_of(again)[:2]) == set(ids[:2]) and ids_of(again)[2] == ids[2]
    assert all(h.deliveries == 1 for h in again)                # the released delivery did not count


def test_a_dead_workers_jobs_are_counted_then_restored_once_by_racing_reapers(redis, store):
    ids = push(redis, 6)
    alive(redis, "w1")
    held = store.reserve("w1", [Q], 6, now=1.0, seq=0)
    assert len(held) == 6 and redis.llen(Q) == 0
    assert store.reap("w1") is None                             # alive: untouched
    assert orphaned(redis, Q) == (0, None)
    redis.delete(contract.heartbeat_key("w1"))                  # the heartbeat expires
    assert store.dead_holders() == ["w1"]
    assert orphaned(redis, Q) == (6, 1000.0)                    # backlog, never invisible
    results, barrier = [], threading.Barrier(8)

    def reaper():
        barrier.wait()
        results.append(store.reap("w1"))

    threads = [threading.Thread(target=reaper) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    restored = [i for r in results for i in (r or [])]
    assert sorted(restored) == sorted(ids)                      # each job restored exactly once
    assert redis.llen(Q) == 6 and store.holders() == set()
    assert orphaned(redis, Q) == (0, None)
    # back at the FRONT: the next reservation takes them before anything newer
    newer = push(redis, 2, submitted_at=5000.0)
    alive(redis, "w2")
    taken = ids_of(store.reserve("w2", [Q], 6, now=2.0, seq=0))
    assert set(taken) == set(ids) and not set(newer) & set(taken)
    assert all(read_record(redis, i).reaped == 1 for i in ids)
    # the dead worker, if it comes back, cannot answer any of them
    meta = json.dumps({"status": "SUCCESS", "result": 1})
    assert store.commit("w1", [Outcome(h.field, i, meta, queue=Q) for h, i in zip(held, ids)]) == [False] * 6


def test_deliveries_count_across_reaps_and_alone_is_returned(redis, store):
    [job] = push(redis, 1)
    for n in range(1, 4):
        alive(redis, "w")
        [h] = store.reserve("w", [Q], 1, now=1.0, seq=n)
        assert h.deliveries == n and h.alone is None
        redis.delete(contract.heartbeat_key("w"))
        store.reap("w")
    redis.hset(contract.job_key(job), mapping=JobRecord(alone="w").to_hash())
    alive(redis, "w")
    [h] = store.reserve("w", [Q], 1, now=1.0, seq=9)
    assert h.alone == "w" and h.deliveries == 4


def test_junk_and_oversized_items_are_held_without_a_record(redis):
    small = Reservations(redis, record_ttl_s=60, result_ttl_s=60, max_bytes=2000)
    big_id = str(uuid.uuid4())
    _, big = messages.job_message(big_id, "minilm", ["x" * 5000], {}, submitted_at=1.0)
    redis.lpush(Q, "not json", big)
    alive(redis, "w")
    held = small.reserve("w", [Q], 5, now=1.0, seq=0)
    assert [h.raw for h in held] == ["not json", big]      # LPUSHed first, taken first
    assert [h.deliveries for h in held] == [0, 0]                # never decoded by the script
    assert not redis.exists(contract.job_key(big_id))
