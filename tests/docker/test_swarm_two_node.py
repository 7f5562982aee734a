"""A two-node swarm on this one machine: a second ``dockerd`` (own data-root, exec-root,
socket, pidfile; no bridge, no iptables) inside a network namespace joined to the host by
a veth pair (10.213.0.1 host side, 10.213.0.2 in the namespace), joined as a worker node,
the image loaded into it with ``docker save | docker load``. The autoscaler scales the
worker service up across both nodes; the burst is served from both; the scale-in drains
before it removes. Workers use host networking, so node 2's reach Redis over the veth:
traffic stays between the root namespace and the one this test creates. Teardown always
leaves the swarm on both engines, stops the second daemon and deletes the namespace.

The second daemon is started with ``nsenter --net`` rather than ``ip netns exec``: the
latter remounts /sys for the new namespace, which hides the cgroup mounts dockerd needs
("Devices cgroup isn't mounted")."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from elastiq.local import procs
from tests.docker.conftest import wait_for
from tests.docker.swarm_util import (
    Autoscaler,
    TaskWatcher,
    assert_drained_then_removed,
    docker,
    has_network,
    job_records,
    leave_swarm,
    live_tasks,
    replicas_of,
    service_tasks,
    set_replicas,
    swarm_lock,
    swarm_state,
    worker_service,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

HOST_IP, NS_IP = "10.213.0.1", "10.213.0.2"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {proc.stderr}")
    return proc


class SecondEngine:
    """dockerd in its own network namespace, everything under ``root``."""

    def __init__(self, uid: str, root: Path):
        self.ns, self.veth_host, self.veth_ns = f"elastiq-{uid}", f"eqh{uid[1:8]}", f"eqn{uid[1:8]}"
        self.root = root
        self.sock = f"unix://{root}/docker.sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        ip("netns", "add", self.ns)
        ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns)
        ip("link", "set", self.veth_ns, "netns", self.ns)
        ip("addr", "add", f"{HOST_IP}/24", "dev", self.veth_host)
        ip("link", "set", self.veth_host, "up")
        for args in (("addr", "add", f"{NS_IP}/24", "dev", self.veth_ns), ("link", "set", self.veth_ns, "up"),
                     ("link", "set", "lo", "up")):
            ip("netns", "exec", self.ns, "ip", *args)
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{self.ns}", "dockerd", "--data-root", f"{self.root}/data",
             "--exec-root", f"{self.root}/exec", "-H", self.sock, "--pidfile", f"{self.root}/docker.pid",
             "--bridge", "none", "--iptables=false", "--ip6tables=false", "--cgroup-parent", self.ns],
            stdout=open(self.root / "dockerd.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: docker("info", host=self.sock, check=False).returncode == 0, 60, "the second dockerd")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for line in reversed(Path("/proc/mounts").read_text().splitlines()):   # netns bind mounts
            target = line.split()[1]
            if target.startswith(str(self.root)):
                subprocess.run(["umount", "-l", target], capture_output=True)
        ip("netns", "del", self.ns, check=False)
        ip("link", "del", self.veth_host, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def two_node_swarm(uid: str, root: Path, image: str):
    with swarm_lock():
        if swarm_state() != "inactive":
            pytest.fail("the engine is already in a swarm this test did not create: refusing to run")
        if ip("addr", "show", check=False).stdout.count(f"{HOST_IP}/") or shutil.which("nsenter") is None:
            pytest.fail(f"{HOST_IP} is already in use on this host, or nsenter is missing")
        engine = SecondEngine(uid, root)
        had_gwbridge = has_network("docker_gwbridge")
        try:
            t0 = time.monotonic()
            engine.start()
            docker("swarm", "init", "--advertise-addr", HOST_IP, "--listen-addr", f"{HOST_IP}:2377")
            token = docker("swarm", "join-token", "-q", "worker").stdout.decode().strip()
            docker("swarm", "join", "--token", token, "--advertise-addr", NS_IP, "--listen-addr",
                   f"{NS_IP}:2377", f"{HOST_IP}:2377", host=engine.sock)
            save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
            docker("load", host=engine.sock, stdin=save.stdout.read(), timeout=300)
            assert save.wait(60) == 0
            print(f"second engine, swarm and image load: {time.monotonic() - t0:.1f}s")
            yield engine
        finally:
            docker("swarm", "leave", "--force", host=engine.sock, check=False)
            engine.stop()
            leave_swarm(had_gwbridge)
            assert ip("link", "show", engine.veth_host, check=False).returncode != 0, "the veth is left over"


class NetRedis(procs.RedisProcess):
    """The test's Redis, also on the veth address (password-protected) for node 2's workers."""

    def args(self) -> list[str]:
        args = super().args()
        args[args.index("--bind") + 1] = f"127.0.0.1 {HOST_IP}"
        return args

    @property
    def net_url(self) -> str:
        return f"redis://:{self.password}@{HOST_IP}:{self.port}/0"


def test_two_node_swarm_both_nodes_serve_and_scale_in_drains(docker_client, image, uid, tmp_path):
    from elastiq.redisconn import redis_client
    from elastiq.settings import Settings
    from producer import Client

    pool = f"elastiq-{uid}"
    with two_node_swarm(uid, Path(f"/tmp/elastiq-node2-{uid}"), image) as engine:
        server = NetRedis(procs.free_port(), tmp_path / "redis", password=uid).start()
        client = Client(server.net_url)
        redis = redis_client(Settings(redis_url=server.net_url))
        nodes = {n["ID"]: n["Status"]["Addr"] for n in docker_client.api.nodes()}
        assert sorted(nodes.values()) == [HOST_IP, NS_IP], nodes
        svc = worker_service(docker_client, image, f"{uid}-worker", pool, server.net_url)
        scaler = Autoscaler(tmp_path, pool, server.net_url, max_workers=2)
        watcher = TaskWatcher(docker_client, svc.id)
        try:
            wait_for(lambda: client.submit("minilm", ["warm up"]).result(timeout=120), 180, "a first result")
            jobs = client.submit_many("minilm", [[f"job {i} sentence {k} on two nodes" for k in range(16)]
                                                 for i in range(200)])
            results = [j.result(timeout=180) for j in jobs]
            assert len(results) == 200 and all(len(r.outputs) == 16 for r in results)
            records = job_records(redis, [j.id for j in jobs])
            assert all(r.get("deliveries") == "1" for r in records), "a job ran twice"
            # which node served each job: worker id minilm-<task id> -> the task's node
            node_of = {f"minilm-{t}": info["node"] for t, info in watcher.seen.items()}
            served = {nodes.get(node_of.get(r["worker"]), "?") for r in records}
            print(f"burst served from {sorted(served)} by {len({r['worker'] for r in records})} workers")
            assert served == {HOST_IP, NS_IP}, f"not served by both nodes: {served}"

            wait_for(lambda: replicas_of(docker_client, svc.id) == 1 and len(live_tasks(docker_client, svc.id)) == 1,
                     150, "scale back in to 1", interval_s=1)
            assert_drained_then_removed(scaler.log(), watcher)

            _node_balance_probe(docker_client, engine, image, uid)
        finally:
            watcher.stop()
            scaler.stop()
            client.close()
            try:
                svc.remove()
            except Exception:  # noqa: BLE001 - cleanup or polling: best effort
                pass
            end = time.monotonic() + 60
            while time.monotonic() < end and (
                    docker_client.api.containers(filters={"label": f"elastiq.pool={pool}"})
                    or docker("ps", "-q", host=engine.sock).stdout.strip()):
                time.sleep(1)
            server.stop()


PROBE = "import os, time\nwhile not os.path.exists('/tmp/stop'):\n    time.sleep(0.2)"


def _node_balance_probe(docker_client, engine, image, uid) -> None:
    """Swarm's own choice, checked against ``swarm_order``: 2 tasks on one node, 1 on the
    other; the lone one exits 0 (as a drained worker does); lowering the count by one then
    removes a *running* task on the fuller node (node balance first) while the finished
    one keeps its slot -- exactly what the backend predicts, and why it never drains a
    victim whose removal Swarm would not choose."""
    import docker.types as t

    from autoscaler.backends.swarm import slot_views, slots_of
    from autoscaler.backends.swarm_order import (
        pick_victims,
        removed_slots,
        safe_to_lower,
    )

    svc = docker_client.services.create(
        image, name=f"{uid}-probe", command=["python", "-c", PROBE], networks=["host"],
        mode=t.ServiceMode("replicated", replicas=3), restart_policy=t.RestartPolicy(condition="on-failure"))
    try:
        def three_running():
            ts = live_tasks(docker_client, svc.id, running_only=True)
            return ts if len(ts) == 3 else None

        tasks = wait_for(three_running, 90, "3 probe tasks running")
        per_node: dict[str, list] = {}
        for task in tasks:
            per_node.setdefault(task["NodeID"], []).append(task)
        assert sorted(map(len, per_node.values())) == [1, 2], f"Swarm did not spread 2/1: {per_node}"
        lone = next(ts[0] for ts in per_node.values() if len(ts) == 1)
        views = slot_views(*slots_of(service_tasks(docker_client, svc.id)))
        # the backend would never pick the lone task as a victim: Swarm would not remove it
        assert lone["Slot"] not in pick_victims(views, [lone["Slot"]], 1)
        host = None if lone["NodeID"] == _manager_id(docker_client) else engine.sock
        cid = lone["Status"]["ContainerStatus"]["ContainerID"]
        docker("exec", cid, "touch", "/tmp/stop", host=host)
        wait_for(lambda: any(x["ID"] == lone["ID"] and x["Status"]["State"] == "complete"
                             for x in service_tasks(docker_client, svc.id)), 30, "the lone task exits 0")
        live, finished = slots_of(service_tasks(docker_client, svc.id))
        views = slot_views(live, finished)
        predicted = removed_slots(views, 2)
        assert not safe_to_lower(views, {lone["Slot"]}), "the backend would have lowered the count here"
        set_replicas(docker_client, svc.id, 2)
        gone = wait_for(lambda: {x["Slot"] for x in service_tasks(docker_client, svc.id)
                                 if x["DesiredState"] == "remove"}, 30, "Swarm's scale-down choice")
        print(f"probe: lone finished slot {lone['Slot']}; Swarm removed slot(s) {sorted(gone)}, "
              f"predicted {sorted(predicted)}")
        assert gone == predicted and lone["Slot"] not in gone
        assert any(x["ID"] == lone["ID"] and x["Status"]["State"] == "complete"
                   for x in service_tasks(docker_client, svc.id)), "the finished task no longer holds its slot"
    finally:
        svc.remove()


def _manager_id(docker_client) -> str:
    return docker_client.info()["Swarm"]["NodeID"]
