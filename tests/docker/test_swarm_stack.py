"""deploy/swarm/stack.yaml itself, deployed with ``docker stack deploy`` on a single-node
swarm of the test's own: Redis with its password from a Swarm secret, the worker service,
the autoscaler behind the services-scope proxy, Flower with auth. A client in a container
on the stack's (attachable) overlay network pushes a burst: the autoscaler scales the
worker service up, every job is answered by its one delivery, then it drains and scales
back in; Flower refuses requests without its password."""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time

import pytest

from tests.docker.conftest import ROOT, wait_for
from tests.docker.swarm_util import (
    TaskWatcher,
    assert_drained_then_removed,
    docker,
    live_tasks,
    own_swarm,
    replicas_of,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

REDIS_IMAGE = "elastiq-redis:test"

CLIENT = r'''
import base64, json, sys, time, urllib.error, urllib.request
import redis
from elastiq import contract
from producer import Client

pw, n, flower_auth = sys.argv[1], int(sys.argv[2]), sys.argv[3]
url = f"redis://:{pw}@redis:6379/0"
client = Client(url)
jobs = client.submit_many("minilm", [[f"stack job {i} sentence {k}" for k in range(16)] for i in range(n)])
results = [j.result(timeout=240) for j in jobs]
r = redis.Redis.from_url(url, decode_responses=True)
records = [r.hgetall(contract.job_key(j.id)) for j in jobs]

def flower(auth):
    req = urllib.request.Request("http://flower:5555/api/workers")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0

end = time.time() + 60
while flower(None) == 0 and time.time() < end:
    time.sleep(1)
print(json.dumps({"answered": len(results), "outputs_ok": all(len(x.outputs) == 16 for x in results),
                  "deliveries": sorted({rec.get("deliveries") for rec in records}),
                  "workers": sorted({rec.get("worker") for rec in records}),
                  "flower_no_auth": flower(None), "flower_wrong": flower("admin:wrong"),
                  "flower_auth": flower(flower_auth)}))
'''


@pytest.fixture(scope="module")
def redis_image(docker_client):
    proc = subprocess.run(["docker", "build", "-q", "-f", "compose/redis.Dockerfile", "-t", REDIS_IMAGE, "."],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return REDIS_IMAGE


def test_stack_deploy_scales_up_and_drains_back(docker_client, image, redis_image, uid):
    stack, pool = f"s{uid[1:7]}", f"elastiq-{uid}"
    redis_pw, flower_auth = secrets.token_hex(12), f"admin:{secrets.token_hex(8)}"
    env = {"ELASTIQ_IMAGE": image, "ELASTIQ_REDIS_IMAGE": redis_image, "ELASTIQ_POOL": pool,
           "ELASTIQ_AUTOSCALE_MAX_WORKERS": "3",
           # three reservations must fit on this 2-CPU node: a task no node can take stays
           # pending and holds scale-in as "loading" for 120 s (then it is stuck, and goes first)
           "ELASTIQ_WORKER_CPUS": "0.5"}
    with own_swarm("127.0.0.1"):
        docker("secret", "create", "elastiq_redis_password", "-", stdin=redis_pw.encode())
        docker("secret", "create", "elastiq_flower_auth", "-", stdin=flower_auth.encode())
        node = docker("node", "ls", "-q").stdout.decode().split()[0]
        docker("node", "update", "--label-add", "elastiq.redis=true", node)
        try:
            t0 = time.monotonic()
            proc = subprocess.run(["docker", "stack", "deploy", "-c", "deploy/swarm/stack.yaml", stack],
                                  cwd=ROOT, capture_output=True, text=True, timeout=120,
                                  env={**_env(), **env})
            assert proc.returncode == 0, proc.stderr
            worker = docker_client.services.get(f"{stack}_worker")
            assert worker.attrs["Spec"]["Labels"]["elastiq.pool"] == pool
            watcher = TaskWatcher(docker_client, worker.id)
            wait_for(lambda: len(live_tasks(docker_client, worker.id, running_only=True)) == 1 and
                     '"current": 1' in _logs(f"{stack}_autoscaler"), 180, "the stack up, autoscaler deciding",
                     interval_s=1)
            print(f"stack deploy -> deciding: {time.monotonic() - t0:.1f}s")

            peak = [0]
            done = threading.Event()
            threading.Thread(target=_watch_peak, args=(docker_client, worker.id, peak, done), daemon=True).start()
            run = subprocess.run(["docker", "run", "--rm", "--network", f"{stack}_backend", "--entrypoint", "python",
                                  image, "-c", CLIENT, redis_pw, "200", flower_auth],
                                 capture_output=True, text=True, timeout=400)
            done.set()
            assert run.returncode == 0, run.stderr[-3000:]
            out = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"stack burst: {out['answered']} answered by {len(out['workers'])} workers, peak {peak[0]}")
            assert out["answered"] == 200 and out["outputs_ok"] and out["deliveries"] == ["1"], out
            assert peak[0] >= 2 and len(out["workers"]) >= 2, (peak, out)
            assert (out["flower_no_auth"], out["flower_wrong"], out["flower_auth"]) == (401, 401, 200), out

            try:
                wait_for(lambda: replicas_of(docker_client, worker.id) == 1 and
                         len(live_tasks(docker_client, worker.id)) == 1, 150, "scale back in to 1", interval_s=1)
            finally:
                log = _logs(f"{stack}_autoscaler")
                print("\n".join(ln for ln in log.splitlines() if not ln.startswith("{"))[-4000:])
            watcher.stop()
            assert_drained_then_removed(log, watcher)
            print(f"stack test body: {time.monotonic() - t0:.1f}s")
        finally:
            subprocess.run(["docker", "stack", "rm", stack], capture_output=True, timeout=120)
            label = {"label": f"com.docker.stack.namespace={stack}"}
            end = time.monotonic() + 90
            # the low-level list (no inspect per container): a task removed between the list
            # and its inspect made containers.list() raise NotFound here
            while time.monotonic() < end and docker_client.api.containers(all=True, filters=label):
                time.sleep(1)
            for _ in range(20):
                if docker("volume", "rm", f"{stack}_redis-data", check=False).returncode == 0 or \
                        docker("volume", "inspect", f"{stack}_redis-data", check=False).returncode != 0:
                    break
                time.sleep(1)
    assert not docker_client.volumes.list(filters=label)


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ELASTIQ_")}


def _logs(service: str) -> str:
    proc = subprocess.run(["docker", "service", "logs", "--raw", service], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def _watch_peak(client, service_id: str, peak: list, done: threading.Event) -> None:
    while not done.wait(1):
        try:
            peak[0] = max(peak[0], replicas_of(client, service_id))
        except Exception:  # noqa: BLE001 - cleanup or polling: best effort
            pass
