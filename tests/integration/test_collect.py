"""Collecting many results in one wait (producer/collect.py) with real workers."""

from __future__ import annotations

import threading

import pytest

from elastiq import contract
from elastiq.errors import JobFailedError, JobTimeoutError
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


def test_map_in_order_with_results_stored_before_the_wait(models_env, workers, client, redis):
    workers.start("debug", slots=4)
    jobs = client.submit_many("debug", [["x" * i] for i in range(1, 301)])
    # most results are stored before anyone subscribes
    wait_until(lambda: redis.exists(*[contract.result_key(j.id) for j in jobs]) >= 200, 30, "200 of 300 results stored")
    out = client.map("debug", [["y" * i] for i in range(1, 51)], progress=False)
    assert [r.outputs for r in out] == [[i] for i in range(1, 51)]
    assert [j.result(timeout=30).outputs for j in jobs] == [[i] for i in range(1, 301)]
    assert all(j.status() == contract.DONE for j in jobs[:5])


def test_map_raises_the_first_failure_in_order(models_env, workers, client):
    workers.start("debug", slots=4)
    with pytest.raises(JobFailedError, match="debug model asked to raise"):
        client.map("debug", [["ok"], ["!raise"], ["fine"]], progress=False)
    job = client.submit("debug", ["!raise"])
    with pytest.raises(JobFailedError):
        job.result(timeout=10)
    assert job.status() == contract.FAILED


def test_timeout_names_the_job_and_later_wait_succeeds(models_env, workers, client):
    job = client.submit("debug", ["later"])          # no worker yet
    with pytest.raises(JobTimeoutError, match=job.id):
        job.result(timeout=0.3)
    workers.start("debug", slots=2)
    assert job.result(timeout=30).outputs == [5]


def test_threads_sharing_one_client(models_env, workers, client):
    workers.start("debug", slots=8)
    errors, outs = [], {}

    def run(k: int) -> None:
        try:
            outs[k] = [r.outputs[0] for r in client.map("debug", [["z" * (k + j + 1)] for j in range(40)],
                                                         progress=False)]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert outs == {k: [k + j + 1 for j in range(40)] for k in range(4)}
