"""What the controller takes from a backend that runs workers elsewhere (swarm, none): its
own choice of victims (Swarm removes tasks by its own rules) and no cap from this host's
free memory and CPUs. Real Redis and heartbeats; the backend here is a plain in-memory
pool because the controller's use of the hooks is what is tested (the swarm backend's are
tested on a real swarm in tests/docker/test_swarm*.py)."""

from __future__ import annotations

import time
import urllib.request

from autoscaler.backends.base import Replica
from autoscaler.controller import Controller
from autoscaler.policy import PolicyConfig
from elastiq import contract
from elastiq.heartbeats import Heartbeat


class Pool:
    name = "pool"
    local_host = False

    def __init__(self, ids):
        self.replicas = [Replica(w, "minilm", w, time.time() - 600) for w in ids]
        self.asked: list[int] = []

    def list(self, group):
        return list(self.replicas)

    def start(self, group):
        r = Replica(f"new-{len(self.replicas)}", group, "h", time.time())
        self.replicas.append(r)
        return r

    def stop(self, replica):
        self.replicas = [r for r in self.replicas if r.worker_id != replica.worker_id]

    def pick_victims(self, replicas, beats, n):
        self.asked.append(n)
        return [r for r in replicas if r.worker_id == "w3"][:n]      # only w3 may go


def _beat(redis, wid, busy=0):
    hb = Heartbeat(wid, queues=(contract.queue_for("minilm"),), ready=True, busy=busy, slots=16,
                   started_at=time.time() - 600, ready_at=time.time() - 590, cold_start_s=1.0,
                   draining=False, rss_mb=10_000_000)      # an RSS no host could hold twice
    redis.set(contract.heartbeat_key(wid), hb.to_json(), ex=30)


def test_backend_picks_the_victims_and_the_host_is_no_cap(redis, redis_url):
    pool = Pool(["w1", "w2", "w3"])
    for w in ("w1", "w2", "w3"):
        _beat(redis, w)
    config = PolicyConfig(min_workers=1, max_workers=6, stabilisation_min_s=0, cold_start_factor=0)
    ctl = Controller(redis=redis, backend=pool, groups=["minilm"], config=config)
    row = ctl.reconcile_once(time.time())[0]
    assert row["desired"] == 1 and pool.asked == [2]
    assert redis.exists(contract.drain_key("w3")) and not redis.exists(contract.drain_key("w1"))
    assert not redis.exists(contract.drain_key("w2"))

    # a backlog of 80: 5 workers wanted; a host-memory cap (10 TB per worker) would hold it at 3
    redis.delete(contract.drain_key("w3"))
    ctl2 = Controller(redis=redis, backend=Pool(["w1", "w2", "w3"]), groups=["minilm"], config=config)
    from producer import Client

    c = Client(redis_url)
    try:
        c.submit_many("minilm", [[f"s{i}"] for i in range(80)])
    finally:
        c.close()
    row = ctl2.reconcile_once(time.time())[0]
    assert row["desired"] == 5 and not row["capacity_limited"], row



def test_the_loop_warns_once_as_redis_nears_maxmemory(redis, redis_url, caplog):
    from autoscaler.metrics import Metrics
    from elastiq.local import procs

    pool = Pool(["w1"])
    _beat(redis, "w1")
    port = procs.free_port()
    ctl = Controller(redis=redis, backend=pool, groups=["minilm"], config=PolicyConfig(min_workers=1),
                     metrics=Metrics(port))
    before = redis.config_get("maxmemory")["maxmemory"]
    used = int(redis.info("memory")["used_memory"])
    redis.config_set("maxmemory", str(int(used / 0.9)))
    try:
        with caplog.at_level("INFO", logger="elastiq.autoscaler"):
            now = time.time()
            for k in range(3):                       # one reading per 30 s: two of these ticks read
                ctl.reconcile_once(now + 20 * k)
    finally:
        redis.config_set("maxmemory", before)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "full" in warnings[0] and "refuses new jobs" in warnings[0]
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    ratio = float(next(line.split()[1] for line in scraped.splitlines()
                       if line.startswith("elastiq_redis_memory_used_ratio ")))
    assert 0.8 <= ratio < 1
    caplog.clear()
    with caplog.at_level("INFO", logger="elastiq.autoscaler"):
        ctl.reconcile_once(now + 90)
    assert any("full again" in r.getMessage() for r in caplog.records)
