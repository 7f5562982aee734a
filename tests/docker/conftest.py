"""Helpers for the docker suite (the engine and image fixtures live in tests/conftest.py,
shared with the docker fault scenario, so the image is built once per session).

A missing engine skips locally and fails under ``CI=true`` (conftest ``require``). Every
container, network and volume a test creates carries a name or label unique to the test
and is removed in a ``finally``/teardown, even when the test fails.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.conftest import BASE, IMAGE, ROOT  # noqa: F401 - re-exported for the docker tests


@pytest.fixture
def uid() -> str:
    return "t" + uuid.uuid4().hex[:8]


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` on timeout."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def heartbeat(redis, worker_id: str) -> dict | None:
    from elastiq import contract

    raw = redis.get(contract.heartbeat_key(worker_id))
    return json.loads(raw) if raw else None


def remove_labelled(client, label: str) -> None:
    for c in client.api.containers(all=True, filters={"label": label}):   # no inspect: no list/remove race
        try:
            client.api.remove_container(c["Id"], force=True, v=True)
        except Exception:  # noqa: BLE001 - teardown, best effort
            pass
