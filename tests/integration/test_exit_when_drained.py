"""``elastiq worker --exit-when-drained``: a real worker process asked to drain finishes the
job it runs, answers it, and exits 0 (what lets Swarm remove its task without stopping it);
without the flag it stays up, drained."""

from __future__ import annotations

import time

from autoscaler.drain import request_drain
from tests.docker.conftest import heartbeat, wait_for


def test_drained_worker_exits_0_after_answering_its_job(models_env, workers, client, redis):
    [wid] = workers.start("debug", 1, slots=2, extra=["--exit-when-drained"])
    job = client.submit("debug", ["!sleep:2000"])
    wait_for(lambda: (heartbeat(redis, wid) or {}).get("busy", 0) > 0, 10, "the job running")
    request_drain(redis, wid)
    proc = workers.procs[wid]
    wait_for(lambda: proc.poll() is not None, 30, "the drained worker exiting")
    assert proc.returncode == 0
    assert job.result(timeout=5).outputs                 # answered before the worker left
    assert heartbeat(redis, wid) is None                 # and its heartbeat is gone


def test_without_the_flag_a_drained_worker_stays(models_env, workers, redis):
    [wid] = workers.start("debug", 1, slots=2)
    request_drain(redis, wid)
    wait_for(lambda: (heartbeat(redis, wid) or {}).get("draining"), 10, "drain seen")
    time.sleep(2)                      # a negative check: drained, it is still up 2 s later
    assert workers.procs[wid].poll() is None
