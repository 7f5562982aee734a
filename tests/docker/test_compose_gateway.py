"""The compose ``gateway`` service (``--profile gateway``), on a project of the test's own:
published on 127.0.0.1 only, bearer auth from the env file, queues jobs on the compose
Redis, refuses to start without a token; ``down -v`` removes the project."""

from __future__ import annotations

import json
import secrets
import subprocess

import httpx
import pytest

from elastiq.local import procs
from tests.docker.conftest import IMAGE, ROOT, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def compose(project: str, env_file, *args: str, check: bool = True, timeout: float = 600):
    p = subprocess.run(["docker", "compose", "-p", project, "-f", "compose/compose.yaml", "--env-file",
                        str(env_file), "--profile", "gateway", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout, check=False)
    if check:
        assert p.returncode == 0, f"docker compose {' '.join(args)}:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    return p


def test_compose_gateway_service(docker_client, image, uid, tmp_path):
    token, port = secrets.token_hex(24), procs.free_port()
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join([
        f"REDIS_PASSWORD={secrets.token_hex(12)}", f"ELASTIQ_REDIS_PORT={procs.free_port()}",
        "FLOWER_USER=admin", f"FLOWER_PASSWORD={secrets.token_hex(8)}", f"FLOWER_PORT={procs.free_port()}",
        f"ELASTIQ_IMAGE={IMAGE}", "ELASTIQ_REDIS_IMAGE=elastiq-redis:test",
        f"ELASTIQ_GATEWAY_TOKENS={token}", f"ELASTIQ_GATEWAY_PORT={port}", ""]))
    project = f"elastiq-gw-{uid}"
    try:
        config = json.loads(compose(project, env_file, "config", "--format", "json").stdout)
        gw = config["services"]["gateway"]
        assert [(p["host_ip"], p["target"]) for p in gw["ports"]] == [("127.0.0.1", 8000)]
        assert gw["environment"]["ELASTIQ_GATEWAY_TOKENS"] == token and gw["read_only"] is True
        compose(project, env_file, "build", "redis")
        compose(project, env_file, "up", "-d", "redis", "gateway")
        url = f"http://127.0.0.1:{port}"

        def healthy():
            try:
                return httpx.get(url + "/healthz", timeout=3).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 120, "the gateway's /healthz")
        assert httpx.get(url + "/v1/models", timeout=10).status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        r = httpx.post(url + "/v1/models/minilm/jobs", headers=auth, json={"inputs": ["hello"]}, timeout=30)
        assert r.status_code == 202, r.text          # queued on the compose Redis (no worker started)
        view = httpx.get(url + r.headers["location"], headers=auth, timeout=10).json()
        assert view["status"] == "queued" and view["model"] == "minilm"
        # no token: the service refuses to start
        p = compose(project, env_file, "run", "--rm", "--no-deps", "-e", "ELASTIQ_GATEWAY_TOKENS=", "gateway",
                    check=False, timeout=120)
        assert p.returncode != 0 and "no gateway token" in (p.stdout + p.stderr)
    finally:
        compose(project, env_file, "down", "-v", "--remove-orphans", check=False, timeout=300)
