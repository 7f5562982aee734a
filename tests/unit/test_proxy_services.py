"""The services scope of the Docker API proxy: only a labelled service's replica count may
change (pure checks here; the swarm docker test runs the autoscaler through the proxy
against a real swarm manager)."""

from __future__ import annotations

import copy
import json

import pytest

from autoscaler.proxy_policy import Policy, Refused
from autoscaler.proxy_services import (
    check_service_update,
    normalise,
    only_version_query,
)
from autoscaler.socketproxy import Proxy
from elastiq.errors import ConfigError

POLICY = Policy("", {"elastiq.pool": "p"}, frozenset(), "services", 4)
SPEC = {"Name": "w", "Labels": {"elastiq.pool": "p", "elastiq.group": "minilm"},
        "Mode": {"Replicated": {"Replicas": 1}},
        "TaskTemplate": {"ContainerSpec": {"Image": "elastiq:latest", "Env": ["A=1"]},
                         "RestartPolicy": {"Condition": "on-failure"}, "ForceUpdate": 0}}
SERVICE = {"ID": "svc1", "Version": {"Index": 7}, "Spec": SPEC}


def body(replicas=2, **changes):
    b = copy.deepcopy(SPEC)
    b["Mode"] = {"Replicated": {"Replicas": replicas}}
    for path, value in changes.items():
        node = b
        keys = path.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return b


def test_only_the_replica_count_changes():
    out = check_service_update(POLICY, SERVICE, body(3))
    assert out["Mode"] == {"Replicated": {"Replicas": 3}}
    assert {k: v for k, v in out.items() if k != "Mode"} == {k: v for k, v in SPEC.items() if k != "Mode"}
    # engine defaults echoed back (zeros, nulls, empty) are not a change
    assert check_service_update(POLICY, SERVICE, body(0, UpdateConfig=None, TaskTemplate__Networks=[]))


@pytest.mark.parametrize("change, why", [
    ({"TaskTemplate__ContainerSpec__Image": "evil:latest"}, "TaskTemplate.ContainerSpec.Image"),
    ({"TaskTemplate__ContainerSpec__Mounts": [{"Source": "/", "Target": "/host", "Type": "bind"}]},
     "TaskTemplate.ContainerSpec.Mounts"),
    ({"TaskTemplate__ContainerSpec__CapabilityAdd": ["CAP_SYS_ADMIN"]}, "CapabilityAdd"),
    ({"Labels": {"elastiq.pool": "p"}}, "Labels.elastiq.group"),
    ({"TaskTemplate__ForceUpdate": 1}, "ForceUpdate"),
])
def test_any_other_change_is_refused(change, why):
    with pytest.raises(Refused, match=why.replace(".", r"\.")):
        check_service_update(POLICY, SERVICE, body(2, **change))


@pytest.mark.parametrize("mode", [
    {"Replicated": {"Replicas": 5}}, {"Replicated": {"Replicas": -1}}, {"Replicated": {"Replicas": True}},
    {"Replicated": {"Replicas": "2"}}, {"Global": {}}, {"Replicated": {"Replicas": 2}, "Global": {}}, None,
])
def test_bad_replica_counts_are_refused(mode):
    b = body(2)
    b["Mode"] = mode
    with pytest.raises(Refused):
        check_service_update(POLICY, SERVICE, b)


def test_unlabelled_or_global_services_are_refused():
    other = {"ID": "x", "Spec": {**SPEC, "Labels": {"elastiq.pool": "other"}}}
    with pytest.raises(Refused, match="labels"):
        check_service_update(POLICY, other, body(2))
    glob = {"ID": "g", "Spec": {**SPEC, "Mode": {"Global": {}}}}
    with pytest.raises(Refused, match="replicated"):
        check_service_update(POLICY, glob, body(2))


@pytest.mark.parametrize("query, ok", [
    ("version=7", True), ("", False), ("version=7&rollback=previous", False),
    ("version=7&registryAuthFrom=previous-spec", False), ("version=x", False),
])
def test_update_query(query, ok):
    if ok:
        assert only_version_query(query) == 7
    else:
        with pytest.raises(Refused):
            only_version_query(query)


def test_normalise_drops_defaults():
    assert normalise({"a": 0, "b": {"c": None, "d": []}, "e": [1, {}], "f": "x"}) == {"e": [1, {}], "f": "x"}


def test_policy_from_env_services_scope():
    p = Policy.from_env({"ELASTIQ_PROXY_SCOPE": "services", "ELASTIQ_PROXY_LABELS": "elastiq.pool=p",
                         "ELASTIQ_PROXY_MAX_REPLICAS": "6"})
    assert (p.scope, p.max_replicas, dict(p.labels)) == ("services", 6, {"elastiq.pool": "p"})
    for bad in ({"ELASTIQ_PROXY_SCOPE": "services", "ELASTIQ_PROXY_LABELS": "elastiq.pool=p"},
                {"ELASTIQ_PROXY_SCOPE": "services", "ELASTIQ_PROXY_MAX_REPLICAS": "3"},
                {"ELASTIQ_PROXY_SCOPE": "nodes", "ELASTIQ_PROXY_LABELS": "a=b", "ELASTIQ_PROXY_IMAGE": "i"}):
        with pytest.raises(ConfigError):
            Policy.from_env(bad)


class EngineStub:
    """The engine's answers for the routing test (the proxy's decisions are what is tested;
    tests/docker/test_swarm.py runs the same proxy against a real swarm manager)."""

    def __init__(self):
        self.services = [SERVICE, {"ID": "other", "Version": {"Index": 1},
                                   "Spec": {**SPEC, "Labels": {"elastiq.pool": "x"}}}]
        self.tasks = [{"ID": "t1", "ServiceID": "svc1"}, {"ID": "t2", "ServiceID": "other"}]
        self.calls: list[tuple[str, str, bytes | None]] = []

    def request(self, method, path, body=None, headers=None):
        self.calls.append((method, path, body))
        base = path.split("?")[0].removeprefix("/v1.41")
        if base == "/services":
            return 200, {}, json.dumps(self.services).encode()
        if base == "/tasks":
            return 200, {}, json.dumps(self.tasks).encode()
        for sv in self.services:
            if base == f"/services/{sv['ID']}":
                return 200, {}, json.dumps(sv).encode()
            if base == f"/services/{sv['ID']}/update":
                return 200, {}, b"{}"
        return 404, {}, b'{"message": "not found"}'


def test_routing_in_services_scope():
    engine = EngineStub()
    proxy = Proxy(POLICY, engine)
    status, _, data = proxy.handle("GET", "/v1.41/services", b"", {})
    assert status == 200 and [s["ID"] for s in json.loads(data)] == ["svc1"]
    status, _, data = proxy.handle("GET", "/v1.41/tasks?filters=%7B%7D", b"", {})
    assert [t["ID"] for t in json.loads(data)] == ["t1"]
    assert proxy.handle("GET", "/v1.41/services/other", b"", {})[0] == 403
    assert proxy.handle("GET", "/v1.41/services/svc1", b"", {})[0] == 200
    for method, path in (("GET", "/v1.41/containers/json"), ("POST", "/v1.41/containers/create"),
                         ("GET", "/v1.41/nodes"), ("GET", "/v1.41/swarm"), ("GET", "/v1.41/secrets"),
                         ("DELETE", "/v1.41/services/svc1"), ("POST", "/v1.41/services/create")):
        assert proxy.handle(method, path, b"", {})[0] == 403, path
    ok = proxy.handle("POST", "/v1.41/services/svc1/update?version=7", json.dumps(body(3)).encode(), {})
    assert ok[0] == 200
    forwarded = json.loads(engine.calls[-1][2])
    assert forwarded["Mode"] == {"Replicated": {"Replicas": 3}} and forwarded["TaskTemplate"] == SPEC["TaskTemplate"]
    assert proxy.handle("POST", "/v1.41/services/svc1/update?version=6", json.dumps(body(3)).encode(), {})[0] == 403
    assert proxy.handle("POST", "/v1.41/services/other/update?version=1", json.dumps(body(3)).encode(), {})[0] == 403
    assert proxy.handle("POST", "/v1.41/services/svc1/update?version=7",
                        json.dumps(body(9)).encode(), {})[0] == 403
