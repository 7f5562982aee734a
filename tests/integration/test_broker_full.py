"""Redis at ``maxmemory`` (``noeviction``, as the stack and compose run it): a submit gets a
typed error that says Redis is full -- not "cannot reach Redis" -- and the client works again
once there is room."""

from __future__ import annotations

import time

import pytest

from elastiq.errors import BrokerFullError, BrokerUnavailableError, broker_error

pytestmark = pytest.mark.integration


def test_a_full_redis_refuses_a_submit_with_a_typed_error_and_the_client_recovers(client, redis):
    used = int(redis.info("memory")["used_memory"])
    redis.config_set("maxmemory", str(used + 256 * 1024))
    try:
        with pytest.raises(BrokerFullError, match="full .*maxmemory") as raised:
            for _ in range(1000):
                client.submit("minilm", ["x" * 4000])
        assert isinstance(raised.value, BrokerUnavailableError)           # a 503 at the gateway, as before
    finally:
        redis.config_set("maxmemory", "0")
    job = client.submit("minilm", ["room again"])
    assert redis.llen("elastiq.minilm") >= 1 and job.id


def test_an_unreachable_redis_is_still_called_unreachable():
    err = broker_error("redis://127.0.0.1:1/0", ConnectionError("Connection refused"))
    assert type(err) is BrokerUnavailableError and "cannot reach Redis" in str(err)


def test_jobs_in_flight_when_redis_fills_are_answered_once_there_is_room(models_env, workers, client, redis):
    # the worker holds jobs when Redis stops taking writes: its answers, heartbeats and
    # reservations are refused for a while; none of the jobs is lost and the worker stays
    (wid,) = workers.start("debug", slots=2)
    jobs = client.submit_many("debug", [[f"job {i}"] for i in range(40)], sleep_ms=100)
    redis.config_set("maxmemory", str(int(redis.info("memory")["used_memory"]) // 2))
    try:
        time.sleep(12)      # the scenario: Redis full for 12 s, past the 6 s heartbeat TTL (default)
    finally:
        redis.config_set("maxmemory", "0")
    results = [j.result(timeout=60) for j in jobs]
    assert [r.outputs for r in results] == [[len(f"job {i}")] for i in range(40)]
    assert workers.procs[wid].poll() is None and redis.llen("elastiq:dead") == 0
    assert "maxmemory" in workers.log(wid)          # the worker did meet the refusals (and logged them)
