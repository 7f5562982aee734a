"""Compose end to end on a project of the test's own: build, up, 200 jobs from the host,
the autoscaler scales the worker service up and back down, Flower needs its password,
and ``down -v`` leaves nothing of the project behind."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from elastiq.local import procs
from tests.docker.conftest import IMAGE, ROOT, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


class Project:
    def __init__(self, name: str, env_file: str):
        self.name, self.env_file = name, env_file

    def compose(self, *args: str, timeout: float = 300) -> str:
        proc = subprocess.run(["docker", "compose", "-p", self.name, "-f", "compose/compose.yaml",
                               "--env-file", self.env_file, *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)
        assert proc.returncode == 0, f"docker compose {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        return proc.stdout

    def workers(self) -> int:
        return len(self.compose("ps", "-q", "worker").split())


def _get(url: str, auth: str | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            json.loads(resp.read())
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_compose_end_to_end(docker_client, image, uid, tmp_path):
    from producer import Client

    redis_pw, flower_pw = secrets.token_hex(12), secrets.token_hex(12)
    redis_port, flower_port = procs.free_port(), procs.free_port()
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join([
        f"REDIS_PASSWORD={redis_pw}", f"ELASTIQ_REDIS_PORT={redis_port}", "FLOWER_USER=admin",
        f"FLOWER_PASSWORD={flower_pw}", f"FLOWER_PORT={flower_port}", f"ELASTIQ_IMAGE={IMAGE}",
        "ELASTIQ_REDIS_IMAGE=elastiq-redis:test", "ELASTIQ_AUTOSCALE_MAX_WORKERS=2", ""]))
    project = Project(f"elastiq-{uid}", str(env_file))
    client = None
    try:
        project.compose("build", timeout=900)
        t0 = time.monotonic()
        project.compose("up", "-d")
        client = Client(f"redis://:{redis_pw}@127.0.0.1:{redis_port}/0")
        first = wait_for(lambda: _try(lambda: client.submit("minilm", ["hello"]).result(timeout=20)), 180,
                         "the first result")
        print(f"up -d -> first result: {time.monotonic() - t0:.1f}s")
        assert len(first.outputs[0]) == 384
        # Redis is capped (half the host, as `elastiq up` does), not left to the OOM killer
        import redis as redis_py

        with redis_py.Redis.from_url(f"redis://:{redis_pw}@127.0.0.1:{redis_port}/0") as r:
            assert int(r.config_get("maxmemory")["maxmemory"]) == procs.redis_maxmemory_mb({}) * 2**20
        # at its minimum of 1; a second may already be starting (the first job waited
        # through the worker's cold start, which the policy's age term reacts to)
        assert 1 <= project.workers() <= 2

        # Flower answers with the credentials, refuses without
        flower = f"http://127.0.0.1:{flower_port}/api/workers"
        wait_for(lambda: _get(flower) in (401, 200), 60, "flower listening")
        assert _get(flower) == 401
        assert _get(flower, "admin:wrong") == 401
        assert _get(flower, f"admin:{flower_pw}") == 200

        jobs = client.submit_many("minilm", [[f"job {i} sentence {k} on the pool" for k in range(32)]
                                             for i in range(200)])
        counts = set()
        results = []
        for job in jobs:
            results.append(job.result(timeout=300))
            counts.add(project.workers())
        assert len(results) == 200 and all(len(r.outputs) == 32 for r in results)
        assert max(counts) >= 2, f"the autoscaler never scaled up: {counts}"
        # the containers it started are the service's: compose lists them (asserted above
        # through `compose ps`) and the autoscaler brings the service back to its minimum
        wait_for(lambda: project.workers() == 1, 180, "scale back down to 1 worker", interval_s=2)
    finally:
        if client is not None:
            client.close()
        if os.environ.get("ELASTIQ_TEST_KEEP") != "1":
            subprocess.run(["docker", "compose", "-p", project.name, "-f", "compose/compose.yaml",
                            "--env-file", str(env_file), "down", "-v", "--remove-orphans", "-t", "30"],
                           cwd=ROOT, capture_output=True, timeout=300)
    label = {"label": f"com.docker.compose.project={project.name}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.networks.list(filters=label) == []
    assert docker_client.volumes.list(filters=label) == []


def _try(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001 - polled again until the deadline
        return None
