"""DockerBackend against the real engine: labelled worker containers that consume jobs
from the host's Redis (network_mode host, asked for explicitly) and return real MiniLM
embeddings; scale up, drain, scale down, and never touch a container without this pool's
label. By default a worker joins the pool's own bridge network, never the host's; and the
backend works through the Docker API socket proxy."""

from __future__ import annotations

import threading

import pytest

from autoscaler.backends.base import BackendError, Replica
from autoscaler.backends.docker import POOL_LABEL, DockerBackend, pool_network
from autoscaler.drain import request_drain
from autoscaler.socketproxy import Policy, serve
from elastiq.local import procs
from tests.docker.conftest import BASE, heartbeat, remove_labelled, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(480)]


def test_scale_up_serve_scale_down_and_leave_bystanders(docker_client, image, redis_url, redis, client, uid):
    pool = f"elastiq-{uid}"
    bystanders = [
        docker_client.containers.run(BASE, ["sleep", "600"], name=f"{uid}-plain", detach=True),
        # a container of *another* pool: same label key, other value
        docker_client.containers.run(BASE, ["sleep", "600"], name=f"{uid}-other", detach=True,
                                     labels={POOL_LABEL: f"{pool}-other", "elastiq.group": "minilm"}),
    ]
    backend = DockerBackend(image, pool=pool, network="host", cpus=1, memory_mb=1500,
                            stop_timeout_s=60, env={"ELASTIQ_REDIS_URL": redis_url,
                                                    "ELASTIQ_WORKER_SLOTS": "8"})
    try:
        assert backend.list("minilm") == []
        replicas = [backend.start("minilm"), backend.start("minilm")]
        listed = backend.list("minilm")
        assert sorted(r.worker_id for r in listed) == sorted(r.worker_id for r in replicas)
        assert all(r.status == "running" and r.started_at for r in listed)
        info = docker_client.containers.get(replicas[0].handle).attrs
        assert info["HostConfig"]["NanoCpus"] == 1_000_000_000
        assert info["HostConfig"]["Memory"] == 1500 * 1024 * 1024
        assert info["HostConfig"]["NetworkMode"] == "host"
        assert info["Config"]["User"] == "elastiq"

        for r in replicas:   # each heartbeats under the id the backend gave it
            wait_for(lambda r=r: (heartbeat(redis, r.worker_id) or {}).get("ready"), 240, f"{r.worker_id} ready")

        jobs = client.submit_many("minilm", [[f"sentence number {i} about containers"] for i in range(40)])
        results = [j.result(timeout=120) for j in jobs]
        assert len(results) == 40
        assert all(len(res.outputs) == 1 and len(res.outputs[0]) == 384 for res in results)
        # the heartbeats (published every second) account for every job
        wait_for(lambda: sum(heartbeat(redis, r.worker_id)["done"] for r in replicas) >= 40, 10,
                 "heartbeats counting 40 done jobs")

        # scale down by one, the controller's way: drain, wait idle, stop
        victim, keeper = replicas
        request_drain(redis, victim.worker_id)
        wait_for(lambda: (heartbeat(redis, victim.worker_id) or {}).get("draining"), 30, "drain seen")
        backend.stop(victim)
        assert [r.worker_id for r in backend.list("minilm")] == [keeper.worker_id]
        assert not docker_client.containers.list(all=True, filters={"id": victim.handle})

        # the remaining worker still serves
        assert len(client.submit("minilm", ["still here"]).result(timeout=60).outputs[0]) == 384

        # a replica of another pool is refused, not stopped
        other = Replica("x", "minilm", bystanders[1].id)
        with pytest.raises(BackendError):
            backend.stop(other)

        assert backend.stop_all() == 1
        assert backend.list("minilm") == []
        for b in bystanders:
            b.reload()
            assert b.status == "running", f"bystander {b.name} was touched"
    finally:
        remove_labelled(docker_client, f"{POOL_LABEL}={pool}")
        for b in bystanders:
            b.remove(force=True)


def test_exited_container_is_not_counted_and_is_cleaned(docker_client, image, redis_url, uid):
    pool = f"elastiq-{uid}"
    # a worker that cannot start (bad slots) exits at once
    backend = DockerBackend(image, pool=pool, network="host", stop_timeout_s=5,
                            env={"ELASTIQ_REDIS_URL": redis_url}, worker_args=["--slots", "0"])
    try:
        r = backend.start("minilm")
        wait_for(lambda: docker_client.containers.get(r.handle).status == "exited", 60, "crash exit")
        assert backend.list("minilm") == []
        assert not docker_client.containers.list(all=True, filters={"label": f"{POOL_LABEL}={pool}"})
    finally:
        remove_labelled(docker_client, f"{POOL_LABEL}={pool}")


def test_errors_are_backend_errors(docker_client, uid):
    backend = DockerBackend("elastiq-no-such-image:never", pool=f"elastiq-{uid}")
    try:
        with pytest.raises(BackendError, match="cannot start"):
            backend.start("minilm")
    finally:
        backend.remove_network()
    unreachable = DockerBackend.from_env({"DOCKER_HOST": "tcp://127.0.0.1:1", "ELASTIQ_DOCKER_API_TIMEOUT_S": "2"})
    with pytest.raises(BackendError):
        unreachable.list("minilm")


def test_from_env_validates():
    from elastiq.errors import ConfigError

    b = DockerBackend.from_env({"ELASTIQ_DOCKER_IMAGE": "img:1", "ELASTIQ_DOCKER_POOL": "p1",
                                "ELASTIQ_DOCKER_CPUS": "0.5", "ELASTIQ_DOCKER_MEMORY_MB": "900",
                                "ELASTIQ_REDIS_URL": "redis://h:1/0", "ELASTIQ_DOCKER_NETWORK": "net",
                                "ELASTIQ_WORKER_SLOTS": "4", "ELASTIQ_AUTOSCALE_MAX_WORKERS": "9"})
    assert (b.image, b.pool, b.cpus, b.memory_mb, b.network) == ("img:1", "p1", 0.5, 900, "net")
    assert DockerBackend.from_env({"ELASTIQ_DOCKER_POOL": "p2"}).network == "elastiq-p2"   # never host by default
    assert b.env == {"ELASTIQ_REDIS_URL": "redis://h:1/0", "ELASTIQ_WORKER_SLOTS": "4"}
    with pytest.raises(ConfigError):
        DockerBackend.from_env({"ELASTIQ_DOCKER_CPUS": "lots"})
    with pytest.raises(ConfigError):
        DockerBackend.from_env({"ELASTIQ_DOCKER_POOL": "bad pool!"})


def _can_reach(container, port: int) -> bool:
    """Whether a process in ``container`` can open 127.0.0.1:``port``."""
    code, _ = container.exec_run(["python", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 3)"])
    return code == 0


def test_default_network_is_the_pools_bridge_not_host(docker_client, image, redis_server, redis_url, uid):
    pool = f"elastiq-{uid}"
    backend = DockerBackend(image, pool=pool, stop_timeout_s=5, env={"ELASTIQ_REDIS_URL": redis_url})
    try:
        replica = backend.start("minilm")
        info = docker_client.api.inspect_container(replica.handle)
        assert info["HostConfig"]["NetworkMode"] == pool_network(pool) != "host"
        assert list(info["NetworkSettings"]["Networks"]) == [pool_network(pool)]
        net = docker_client.networks.get(pool_network(pool))
        assert net.attrs["Driver"] == "bridge" and net.attrs["Labels"][POOL_LABEL] == pool
        # the host's loopback (here: the test's password-less Redis) is out of its reach
        container = docker_client.containers.get(replica.handle)
        wait_for(lambda: container.reload() or container.status == "running", 30, "container running")
        assert not _can_reach(container, redis_server.port)
        backend.start("minilm")                  # the second start reuses the network
        assert len(backend.list("minilm")) == 2
        assert backend.stop_all() == 2
    finally:
        remove_labelled(docker_client, f"{POOL_LABEL}={pool}")
        assert backend.remove_network()


def test_backend_through_the_socket_proxy(docker_client, image, redis_url, uid):
    """The backend's own create body passes the proxy's policy, and what the engine made
    of it is a non-root worker without capabilities, with no-new-privileges."""
    import docker

    pool = f"elastiq-{uid}"
    direct = DockerBackend(image, pool=pool, stop_timeout_s=5)
    direct.ensure_network()                      # the operator's step: the proxy refuses network calls
    server = serve(Policy(image, {POOL_LABEL: pool}, frozenset({pool_network(pool)})),
                   f"127.0.0.1:{(port := procs.free_port())}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    via = DockerBackend(image, pool=pool, stop_timeout_s=5, env={"ELASTIQ_REDIS_URL": redis_url},
                        docker_host=f"tcp://127.0.0.1:{port}")
    try:
        replica = via.start("minilm")
        assert [r.worker_id for r in via.list("minilm")] == [replica.worker_id]
        info = docker_client.api.inspect_container(replica.handle)
        host = info["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"] and not host["Privileged"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        container = docker_client.containers.get(replica.handle)
        wait_for(lambda: container.reload() or container.status == "running", 30, "container running")
        code, out = container.exec_run(["id", "-u"])
        assert code == 0 and int(out) == 10001          # the image's `elastiq` user
        # the same backend pointed at another network is refused by the proxy
        other = DockerBackend(image, pool=pool, network="host", docker_host=f"tcp://127.0.0.1:{port}")
        with pytest.raises(BackendError, match="403|not one of"):
            other.start("minilm")
        assert via.stop_all() == 1
    finally:
        server.shutdown()
        server.server_close()
        remove_labelled(docker_client, f"{POOL_LABEL}={pool}")
        assert direct.remove_network()
        docker.DockerClient.close(direct.client)
