"""``elastiq up --gateway``: the gateway runs on loopback with a generated token, and
``elastiq down`` stops it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import pytest

from elastiq.local import procs
from tests.integration.test_stack import elastiq, listening_addresses, stack_env  # noqa: F401 - pytest fixtures, used by name

pytestmark = pytest.mark.integration


def test_up_with_gateway(stack_env, models_file):  # noqa: F811 - the fixture imported above
    env = {**stack_env, "ELASTIQ_MODELS": str(models_file)}
    up = elastiq("up", "--workers", "1", "--models", "debug", "--no-flower", "--gateway",
                 "--redis-port", str(procs.free_port()), "--json", env=env)
    assert up.returncode == 0, up.stderr[-2000:]
    state = json.loads(up.stdout)
    token_file = Path(state["gateway_token_file"])
    assert token_file.parent == Path(env["ELASTIQ_HOME"]).resolve()
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    url = f"http://127.0.0.1:{state['gateway_port']}"
    assert httpx.post(url + "/v1/models/debug/infer", json={"inputs": ["x"]}).status_code == 401
    r = httpx.post(url + "/v1/models/debug/infer", json={"inputs": ["hello"]}, timeout=30,
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["outputs"] == [5], r.text
    assert listening_addresses(state["gateway_pid"]) == {"127.0.0.1"}
    down = elastiq("down", env=env)
    assert down.returncode == 0
    assert not procs.pid_alive(state["gateway_pid"])
