"""The Docker API allow-list proxy against the real engine: the worker lifecycle passes,
everything that could reach beyond this project's worker containers, or give one more
power than a non-root, capability-less, no-new-privileges process, is refused (403).

The policy image here is a small image built for the test from python:3.11-slim, with no
USER (its default is root), a second name for uid 0 (``toor``) and an ordinary user
(``app``, uid 1234): user names must be *resolved* against the image, not compared.
"""

from __future__ import annotations

import http.client
import io
import json
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.socketproxy import Policy, serve
from elastiq.local import procs
from tests.docker.conftest import BASE

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

NNP = ["no-new-privileges"]
DOCKERFILE = f"""FROM {BASE}
RUN useradd -o -u 0 -g 0 -M toor && useradd -u 1234 -M app
"""


@pytest.fixture(scope="module")
def users_image(docker_client):
    """The test's own policy image (removed afterwards)."""
    tag = f"elastiq-proxytest:{uuid.uuid4().hex[:8]}"
    docker_client.images.build(fileobj=io.BytesIO(DOCKERFILE.encode()), tag=tag, rm=True, pull=False)
    yield tag
    docker_client.images.remove(tag, force=True)


class Project:
    def __init__(self, via, labels, net, bystander, port, image):
        self.via, self.labels, self.net, self.bystander, self.port, self.image = \
            via, labels, net, bystander, port, image

    def post(self, raw: bytes, name: str) -> tuple[int, dict]:
        """POST raw bytes to /containers/create through the proxy (duplicate keys and all)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", f"/v1.41/containers/create?name={name}", body=raw,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()


@pytest.fixture
def project(docker_client, users_image, uid):
    """A network, the proxy in a thread (listening on loopback) and an SDK client through it."""
    import docker

    net = docker_client.networks.create(f"{uid}_default")
    labels = {"com.docker.compose.project": uid, "com.docker.compose.service": "worker"}
    policy = Policy(users_image, labels, frozenset({net.name}))
    port = procs.free_port()
    server = serve(policy, f"127.0.0.1:{port}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    via = docker.DockerClient(base_url=f"tcp://127.0.0.1:{port}", timeout=60)
    bystander = docker_client.containers.run(BASE, ["sleep", "600"], name=f"{uid}-bystander", detach=True)
    try:
        yield Project(via, labels, net.name, bystander, port, users_image)
    finally:
        server.shutdown()
        server.server_close()
        via.close()
        for c in docker_client.containers.list(all=True, filters={"name": uid}):
            c.remove(force=True)
        net.remove()


def config(p: Project, **extra) -> dict:
    cfg = {"Image": p.image, "Cmd": ["sleep", "300"], "Labels": dict(p.labels), "User": "app",
           "HostConfig": {"NetworkMode": p.net, "CapDrop": ["ALL"], "SecurityOpt": list(NNP)},
           "NetworkingConfig": {"EndpointsConfig": {p.net: {}}}}
    for key, value in extra.items():
        if key.startswith("Host_"):
            if value is DROP:
                cfg["HostConfig"].pop(key[5:], None)
            else:
                cfg["HostConfig"][key[5:]] = value
        elif value is DROP:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return cfg


DROP = object()


def engine_view_is_safe(info: dict, net: str) -> list[str]:
    """What the engine itself says about a created container: every widening found."""
    h, c = info["HostConfig"], info["Config"]
    bad = []
    if h.get("Privileged"):
        bad.append("privileged")
    if h.get("CapAdd"):
        bad.append(f"CapAdd {h['CapAdd']}")
    if [x.upper() for x in h.get("CapDrop") or []] != ["ALL"]:
        bad.append(f"CapDrop {h.get('CapDrop')}")
    if not h.get("SecurityOpt") or any(not x.startswith("no-new-privileges") for x in h["SecurityOpt"]) \
            or any(x.endswith("false") for x in h["SecurityOpt"]):
        bad.append(f"SecurityOpt {h.get('SecurityOpt')}")
    for key in ("Binds", "Mounts", "Devices", "DeviceRequests", "DeviceCgroupRules", "VolumesFrom", "GroupAdd",
                "Sysctls", "Tmpfs", "Ulimits", "Links"):
        if h.get(key):
            bad.append(f"{key} {h[key]}")
    # (CgroupnsMode is left out: an unset one follows the daemon's default, which is "host"
    # on a cgroup v1 engine; a body asking for "host" is refused, see DANGEROUS)
    for key in ("PidMode", "IpcMode", "UTSMode", "UsernsMode"):
        if str(h.get(key) or "").startswith(("host", "container")):
            bad.append(f"{key} {h[key]}")
    if h.get("NetworkMode") != net:
        bad.append(f"NetworkMode {h.get('NetworkMode')}")
    if "/proc/kcore" not in (h.get("MaskedPaths") or []) or "/proc/sys" not in (h.get("ReadonlyPaths") or []):
        bad.append("MaskedPaths/ReadonlyPaths overridden")
    if (h.get("OomScoreAdj") or 0) < 0 or h.get("OomKillDisable"):
        bad.append("OOM settings")
    if any(v for v in (h.get("PortBindings") or {}).values()) or h.get("PublishAllPorts"):
        bad.append("published ports")
    if c.get("Volumes"):
        bad.append(f"Volumes {c['Volumes']}")
    return bad


def uid_inside(docker_client, ident: str) -> int:
    """Start the container (through nothing but the engine) and ask it for its uid."""
    container = docker_client.containers.get(ident)
    container.start()
    code, out = container.exec_run(["id", "-u"])
    assert code == 0, out
    return int(out.decode().strip())


def test_worker_lifecycle_is_allowed(docker_client, project, uid):
    via = project.via
    created = via.api.create_container_from_config(config(project), f"{uid}-worker-1")
    via.api.start(created["Id"])
    assert via.api.inspect_container(created["Id"])["State"]["Running"]
    listed = {c["Id"] for c in via.api.containers(all=True)}
    assert created["Id"] in listed and project.bystander.id not in listed   # only its own are visible
    assert uid_inside(docker_client, created["Id"]) == 1234
    assert not engine_view_is_safe(docker_client.api.inspect_container(created["Id"]), project.net)
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
    ({"User": "root"}, "uid 0"),
    ({"Labels": {"com.docker.compose.service": "worker"}}, "labels must include"),
    # the holes of issue 14
    ({"Host_MaskedPaths": []}, "MaskedPaths"),
    ({"Host_ReadonlyPaths": []}, "ReadonlyPaths"),
    ({"User": "00"}, "uid 0"),
    ({"User": "+0"}, "signed"),
    ({"User": "toor"}, "uid 0"),
    ({"User": DROP}, "would run as root"),
    ({"Host_CapDrop": DROP}, "CapDrop"),
    ({"Host_SecurityOpt": DROP}, "SecurityOpt"),
    ({"Host_OomScoreAdj": -1000}, "OomScoreAdj"),
    ({"Host_Ulimits": [{"Name": "memlock", "Soft": -1, "Hard": -1}]}, "Ulimits"),
    ({"Host_Tmpfs": {"/tmp": "exec,size=64g"}}, "Tmpfs"),
    ({"Privileged": True}, "Privileged"),       # the engine still reads HostConfig fields at the top level
])
def test_dangerous_create_is_refused(docker_client, project, uid, extra, reason):
    import docker.errors

    with pytest.raises(docker.errors.APIError) as info:
        project.via.api.create_container_from_config(config(project, **extra), f"{uid}-evil")
    assert info.value.status_code == 403 and reason in str(info.value)
    assert not docker_client.containers.list(all=True, filters={"name": f"{uid}-evil"})


@pytest.mark.parametrize("tail", [
    ', "User": "0"}',                                   # exact duplicate: the engine keeps the last
    ', "hostconfig": {"Privileged": true}}',            # the engine matches keys case-insensitively
    ', "hostConfig": null}',                            # would drop the checked HostConfig
])
def test_duplicate_and_case_variant_keys_are_refused(docker_client, project, uid, tail):
    raw = json.dumps(config(project))[:-1] + tail
    status, answer = project.post(raw.encode(), f"{uid}-dup")
    assert status == 403 and "duplicate key" in answer["message"], answer
    assert not docker_client.containers.list(all=True, filters={"name": f"{uid}-dup"})


def test_other_containers_and_endpoints_are_refused(docker_client, project):
    import docker.errors

    via, bystander = project.via, project.bystander
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


def test_start_with_a_body_and_old_api_versions_are_refused(docker_client, project, uid):
    created = project.via.api.create_container_from_config(config(project), f"{uid}-w2")
    for method, path, body in [("POST", f"/v1.23/containers/{created['Id']}/start", b'{"Privileged": true}'),
                               ("POST", f"/v1.41/containers/{created['Id']}/start", b'{"Privileged": true}'),
                               ("POST", "/v1.12/containers/create", json.dumps(config(project)).encode())]:
        conn = http.client.HTTPConnection("127.0.0.1", project.port, timeout=30)
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 403, path
        conn.close()
    assert docker_client.api.inspect_container(created["Id"])["State"]["Status"] == "created"


# --- the fuzz: >= 1,000 generated create bodies through the real proxy to the real engine

BENIGN = [
    ("Host_NanoCpus", st.integers(10**8, 2 * 10**9)), ("Host_Memory", st.integers(64 << 20, 2 << 30)),
    ("Host_PidsLimit", st.integers(16, 4096)), ("Host_ReadonlyRootfs", st.booleans()),
    ("Host_OomScoreAdj", st.integers(0, 1000)), ("Host_Init", st.booleans()),
    ("Host_ShmSize", st.integers(1 << 20, 256 << 20)), ("Host_AutoRemove", st.just(False)),
    ("Host_RestartPolicy", st.just({"Name": "no"})), ("Host_CpuShares", st.integers(2, 1024)),
    ("Host_LogConfig", st.just({"Type": "json-file", "Config": {"max-size": "10m"}})),
    ("Host_SecurityOpt", st.sampled_from([["no-new-privileges:true"], ["no-new-privileges=true"]])),
    ("Env", st.lists(st.from_regex(r"[A-Z]{1,8}=[a-z0-9]{0,8}", fullmatch=True), max_size=3)),
    ("User", st.sampled_from(["app", "1234", "1234:1234", "daemon", "4321", "nobody", "app:app"])),
    ("WorkingDir", st.just("/tmp")), ("StopSignal", st.just("SIGTERM")), ("Hostname", st.just("w1")),
    ("Healthcheck", st.just({"Test": ["CMD", "true"], "Interval": 10**9, "Retries": 3})),
    ("Volumes", st.just(None)), ("Runtime", st.just(None)),          # nulls are fine (the SDK sends some)
]
CAPS = st.lists(st.sampled_from(["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "ALL"]),
                min_size=1, max_size=2)
ROOTISH = ["root", "0", "00", "+0", "-0", "toor", "0:0", "toor:app", "app:0", "app:root", "1234:0", "000"]
DANGEROUS = [
    ("Host_Privileged", st.just(True)), ("Host_CapAdd", CAPS), ("Host_Binds", st.just(["/:/host"])),
    ("Host_Mounts", st.just([{"Type": "bind", "Source": "/etc", "Target": "/h"}])),
    ("Host_Devices", st.just([{"PathOnHost": "/dev/kmsg", "PathInContainer": "/dev/kmsg",
                               "CgroupPermissions": "r"}])),
    ("Host_PidMode", st.sampled_from(["host", "container:x"])), ("Host_IpcMode", st.just("host")),
    ("Host_UTSMode", st.just("host")), ("Host_UsernsMode", st.just("host")),
    ("Host_CgroupnsMode", st.just("host")), ("Host_NetworkMode", st.sampled_from(["host", "bridge", "none"])),
    ("Host_MaskedPaths", st.lists(st.just("/proc/kcore"), max_size=1)),
    ("Host_ReadonlyPaths", st.lists(st.just("/proc/sys"), max_size=1)),
    ("Host_SecurityOpt", st.sampled_from([["seccomp=unconfined"], ["apparmor=unconfined"], ["label=disable"],
                                           ["no-new-privileges", "seccomp=unconfined"], ["no-new-privileges:false"],
                                           []])),
    ("Host_CapDrop", st.sampled_from([[], ["NET_RAW"], None, DROP])), ("Host_SecurityOpt", st.just(DROP)),
    ("Host_Sysctls", st.just({"net.ipv4.ip_forward": "1"})), ("Host_OomScoreAdj", st.integers(-1000, -1)),
    ("Host_Ulimits", st.just([{"Name": "nofile", "Soft": 1 << 20, "Hard": 1 << 20}])),
    ("Host_Tmpfs", st.just({"/run": "rw,exec"})), ("Host_VolumesFrom", st.just(["BYSTANDER"])),
    ("Host_GroupAdd", st.just(["0"])), ("Host_DeviceCgroupRules", st.just(["c *:* rmw"])),
    ("Host_OomKillDisable", st.just(True)), ("Host_CgroupParent", st.just("/")),
    ("Host_PortBindings", st.just({"80/tcp": [{"HostPort": "0"}]})), ("Host_PublishAllPorts", st.just(True)),
    ("Host_Runtime", st.just("runc")), ("Host_Links", st.just(["BYSTANDER:b"])),
    ("Host_privileged", st.just(True)), ("hostconfig", st.just({"Privileged": True})),
    ("User", st.sampled_from(ROOTISH)), ("User", st.just(DROP)), ("User", st.just("")),
    ("Volumes", st.just({"/data": {}})), ("Image", st.just(BASE)),
    ("Privileged", st.just(True)), ("Binds", st.just(["/:/host"])), ("CapAdd", CAPS),   # legacy top level
    ("Labels", st.just({"com.docker.compose.project": "someone-else"})),
]


def mutations(pool):
    return st.lists(st.sampled_from(range(len(pool))).flatmap(
        lambda i: pool[i][1].map(lambda v, k=pool[i][0]: (k, v))), max_size=3)


N_FUZZ = 1000


def test_fuzz_create_bodies(docker_client, project, uid):
    outcomes = {"accepted": [], "refused": [], "benign_refused": [], "dangerous_accepted": [], "unsafe": []}
    uids_seen: dict[str, int] = {}
    count = [0]

    @settings(max_examples=N_FUZZ, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(benign=mutations(BENIGN), dangerous=st.one_of(st.just([]), mutations(DANGEROUS)))
    def fuzz(benign, dangerous):
        count[0] += 1
        extra = {}
        for key, value in benign + dangerous:          # a dangerous value is applied last: it wins
            if isinstance(value, list) and value and isinstance(value[0], str) and "BYSTANDER" in value[0]:
                value = [x.replace("BYSTANDER", project.bystander.id) for x in value]
            extra[key] = value
        name = f"{uid}-fz{count[0]}"
        status, answer = project.post(json.dumps(config(project, **extra)).encode(), name)
        if status == 201:
            outcomes["accepted"].append(extra)
            if dangerous:
                outcomes["dangerous_accepted"].append(dangerous)
            info = docker_client.api.inspect_container(answer["Id"])
            bad = engine_view_is_safe(info, project.net)
            if bad:
                outcomes["unsafe"].append((extra, bad))
            user = info["Config"]["User"]
            if user not in uids_seen:
                uids_seen[user] = uid_inside(docker_client, answer["Id"])
            docker_client.api.remove_container(answer["Id"], force=True)
        else:
            assert status == 403, (status, answer)
            outcomes["refused"].append(answer["message"])
            if not dangerous:
                outcomes["benign_refused"].append((extra, answer["message"]))

    fuzz()
    assert count[0] >= N_FUZZ
    assert not outcomes["dangerous_accepted"], outcomes["dangerous_accepted"][:5]
    assert not outcomes["unsafe"], outcomes["unsafe"][:5]
    assert not outcomes["benign_refused"], outcomes["benign_refused"][:5]
    assert uids_seen and all(v != 0 for v in uids_seen.values()), uids_seen
    assert len(outcomes["accepted"]) >= 100 and len(outcomes["refused"]) >= 300, \
        {k: len(v) for k, v in outcomes.items()}
    print({k: len(v) for k, v in outcomes.items()}, "uids:", uids_seen)
