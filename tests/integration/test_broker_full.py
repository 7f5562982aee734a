"""Redis at ``maxmemory`` (``noeviction``, as the stack and compose run it): a submit gets a
typed error that says Redis is full -- not "cannot reach Redis" -- and the client works again
once there is room."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from elastiq.errors import BrokerFullError, BrokerUnavailableError, broker_error
from elastiq.local import procs

pytestmark = pytest.mark.integration


def test_a_full_redis_refuses_a_submit_with_a_typed_error_and_the_client_recovers(client, redis):
    used, before = int(redis.info("memory")["used_memory"]), redis.config_get("maxmemory")["maxmemory"]
    redis.config_set("maxmemory", str(used + 256 * 1024))
    try:
        with pytest.raises(BrokerFullError, match="full .*maxmemory") as raised:
            for _ in range(1000):
                client.submit("minilm", ["x" * 4000])
        assert isinstance(raised.value, BrokerUnavailableError)           # a 503 at the gateway, as before
    finally:
        redis.config_set("maxmemory", before)
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
    before = redis.config_get("maxmemory")["maxmemory"]
    redis.config_set("maxmemory", str(int(redis.info("memory")["used_memory"]) // 2))
    try:
        time.sleep(12)      # the scenario: Redis full for 12 s, past the 6 s heartbeat TTL (default)
    finally:
        redis.config_set("maxmemory", before)
    results = [j.result(timeout=60) for j in jobs]
    assert [r.outputs for r in results] == [[len(f"job {i}")] for i in range(40)]
    assert workers.procs[wid].poll() is None and redis.llen("elastiq:dead") == 0
    assert "maxmemory" in workers.log(wid)          # the worker did meet the refusals (and logged them)


def test_the_test_redis_runs_with_the_stacks_default_maxmemory(redis_server, redis):
    # procs.RedisProcess is how `elastiq up` starts Redis: half the host's memory unless set
    expected = procs.redis_maxmemory_mb()
    assert expected and redis_server.maxmemory_mb == expected
    assert int(redis.config_get("maxmemory")["maxmemory"]) == expected * 2**20


def test_status_warns_before_redis_is_full(redis_url, redis):
    """`elastiq status` (and --json) says so from 80 % of maxmemory, while submits still work."""
    env = {**os.environ, "ELASTIQ_REDIS_URL": redis_url}
    quiet = json.loads(_status("--json", env=env))["redis"]
    assert quiet["near_full"] is False and quiet["used_fraction"] < 0.8
    before = redis.config_get("maxmemory")["maxmemory"]
    used = int(redis.info("memory")["used_memory"])
    redis.config_set("maxmemory", str(int(used / 0.9)))
    try:
        loud = json.loads(_status("--json", env=env))["redis"]
        assert loud["near_full"] is True and 0.8 <= loud["used_fraction"] < 1
        assert "refuses new jobs (BrokerFullError)" in _status(env=env)
    finally:
        redis.config_set("maxmemory", before)
    assert "refuses new jobs" not in _status(env=env)


def _status(*args, env) -> str:
    out = subprocess.run([sys.executable, "-m", "elastiq.cli", "status", *args], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout
