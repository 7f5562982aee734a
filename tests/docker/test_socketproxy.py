"""The Docker API allow-list proxy against the real engine: the worker lifecycle passes,
everything that could reach beyond this project's worker containers is refused (403)."""

from __future__ import annotations

import threading

import pytest

from autoscaler.socketproxy import Policy, check_create, serve
from elastiq import procs
from tests.docker.conftest import BASE

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]


@pytest.fixture
def project(docker_client, uid):
    """A network, the proxy in a thread (listening on loopback) and an SDK client through it."""
    import docker

    net = docker_client.networks.create(f"{uid}_default")
    labels = {"com.docker.compose.project": uid, "com.docker.compose.service": "worker"}
    policy = Policy(BASE, labels, frozenset({net.name}))
    port = procs.free_port()
    server = serve(policy, f"127.0.0.1:{port}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    via = docker.DockerClient(base_url=f"tcp://127.0.0.1:{port}", timeout=60)
    bystander = docker_client.containers.run(BASE, ["sleep", "300"], name=f"{uid}-bystander", detach=True)
    try:
        yield via, labels, net.name, bystander
    finally:
        server.shutdown()
        server.server_close()
        via.close()
        for c in docker_client.containers.list(all=True, filters={"name": uid}):
            c.remove(force=True)
        net.remove()


def _config(labels, network, **extra):
    cfg = {"Image": BASE, "Cmd": ["sleep", "300"], "Labels": dict(labels),
           "HostConfig": {"NetworkMode": network}, "NetworkingConfig": {"EndpointsConfig": {network: {}}}}
    for key, value in extra.items():
        if key.startswith("Host_"):
            cfg["HostConfig"][key[5:]] = value
        else:
            cfg[key] = value
    return cfg


def test_worker_lifecycle_is_allowed(docker_client, project, uid):
    via, labels, net, bystander = project
    created = via.api.create_container_from_config(_config(labels, net), f"{uid}-worker-1")
    via.api.start(created["Id"])
    assert via.api.inspect_container(created["Id"])["State"]["Running"]
    listed = {c["Id"] for c in via.api.containers(all=True)}
    assert created["Id"] in listed and bystander.id not in listed   # only its own are visible
    via.api.stop(created["Id"], timeout=1)
    via.api.remove_container(created["Id"])
    assert not docker_client.containers.list(all=True, filters={"id": created["Id"]})


@pytest.mark.parametrize("extra, reason", [
    ({"Host_Privileged": True}, "Privileged"),
    ({"Host_Binds": ["/:/host"]}, "Binds"),
    ({"Host_Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]}, "Mounts"),
    ({"Host_Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}]},
     "Devices"),
    ({"Host_CapAdd": ["SYS_ADMIN"]}, "CapAdd"),
    ({"Host_PidMode": "host"}, "PidMode"),
    ({"Host_NetworkMode": "host", "NetworkingConfig": {}}, "network"),
    ({"Host_SecurityOpt": ["seccomp=unconfined"]}, "security option"),
    ({"Host_PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}, "published ports"),
    ({"Image": "elastiq-other:latest"}, "image"),
    ({"User": "root"}, "root"),
    ({"Labels": {"com.docker.compose.service": "worker"}}, "labels must include"),
    ({"Labels": {"x": "1"}}, "labels"),
])
def test_dangerous_create_is_refused(docker_client, project, uid, extra, reason):
    import docker.errors

    via, labels, net, _ = project
    cfg = _config(labels, net, **extra)
    if "Labels" in extra and extra["Labels"].get("x"):
        cfg["Labels"] = {**labels, **extra["Labels"]}
    with pytest.raises(docker.errors.APIError) as info:
        via.api.create_container_from_config(cfg, f"{uid}-evil")
    assert info.value.status_code == 403 and reason in str(info.value)
    assert not docker_client.containers.list(all=True, filters={"name": f"{uid}-evil"})


def test_other_containers_and_endpoints_are_refused(docker_client, project):
    import docker.errors

    via, _, _, bystander = project
    for call in (lambda: via.api.inspect_container(bystander.id), lambda: via.api.stop(bystander.id),
                 lambda: via.api.kill(bystander.id), lambda: via.api.remove_container(bystander.id, force=True),
                 lambda: via.api.exec_create(bystander.id, ["id"]), lambda: via.api.images(),
                 lambda: via.api.create_volume("x"), lambda: via.api.networks(),
                 lambda: via.api.pull("python", tag="3.11-slim")):
        with pytest.raises(docker.errors.APIError) as info:
            call()
        assert info.value.status_code == 403
    bystander.reload()
    assert bystander.status == "running"


def test_check_create_is_pure():
    policy = Policy("img", {"com.docker.compose.project": "p"}, frozenset({"p_default"}))
    ok = {"Image": "img", "Labels": {"com.docker.compose.project": "p"},
          "HostConfig": {"NetworkMode": "p_default", "NanoCpus": 10**9, "Memory": 2**30}}
    assert check_create(policy, ok, policy.networks) is None
    assert "not allowed" in check_create(policy, {**ok, "HostConfig": {**ok["HostConfig"], "VolumesFrom": ["x"]}},
                                         policy.networks)
    assert "one-off" in check_create(policy, {**ok, "Labels": {**ok["Labels"], "com.docker.compose.oneoff": "True"}},
                                     policy.networks)
    assert "not a JSON object" in check_create(policy, [], policy.networks)
