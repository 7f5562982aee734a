"""The Docker API proxy's create policy as pure functions (the same checks run against a
real engine in tests/docker/test_socketproxy.py)."""

from __future__ import annotations

import json

import pytest

from autoscaler.proxy_policy import Policy, Refused, check_create, parse_body, refusal
from autoscaler.proxy_users import ImageUsers, resolve_uid

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
toor:x:0:0:root alias:/root:/bin/bash
app:x:1234:1234::/home/app:/bin/sh
+0:x:1500:1500::/:/bin/sh
ops:x:2000:2000::/:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = """root:x:0:ops
daemon:x:1:
app:x:1234:
wheel0:x:0:
ops:x:2000:
"""
IMAGE = ImageUsers.parse("app", PASSWD, GROUP)
ROOT_IMAGE = ImageUsers.parse("", PASSWD, GROUP)
POLICY = Policy("img", {"com.docker.compose.project": "p"}, frozenset({"p_default"}))


def body(**extra) -> dict:
    b = {"Image": "img", "Labels": {"com.docker.compose.project": "p"}, "User": "1234",
         "HostConfig": {"NetworkMode": "p_default", "NanoCpus": 10**9, "Memory": 2**30,
                        "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"]}}
    for key, value in extra.items():
        if key.startswith("Host_"):
            b["HostConfig"][key[5:]] = value
        else:
            b[key] = value
    return b


@pytest.mark.parametrize("spec, uid", [
    ("1234", 1234), ("0100", 100), ("app", 1234), ("daemon", 1), ("nobody", 65534), ("1234:1234", 1234),
    ("app:app", 1234), (None, 1234), ("", 1234), ("4321", 4321),
])
def test_users_that_resolve_to_a_non_zero_uid(spec, uid):
    assert resolve_uid(spec, IMAGE) == uid


@pytest.mark.parametrize("spec, why", [
    ("0", "uid 0"), ("00", "uid 0"), ("+0", "signed"), ("-0", "signed"), ("+1500", "signed"),
    ("root", "uid 0"), ("toor", "uid 0"), ("1234:0", "root group"), ("app:root", "root group"),
    ("app:wheel0", "root group"), ("ops", "member of the root group"), ("2000", "member of the root group"),
    ("ghost", "not in the image"), ("\u0661\u0662", "not a number or a plain name"), (" 1234", "plain name"),
    ("99999999999", "out of range"), ("app:ghosts", "not in the image"), ("1234:x:y", "plain name"),
])
def test_users_refused(spec, why):
    with pytest.raises(Refused, match=why):
        resolve_uid(spec, IMAGE)


def test_empty_user_is_the_images_default_and_root_without_one():
    with pytest.raises(Refused, match="would run as root"):
        resolve_uid("", ROOT_IMAGE)
    assert resolve_uid("daemon", ROOT_IMAGE) == 1


def test_allowed_body_is_forwarded_canonical():
    sdk_quirk = {**body(), "NetworkingConfig": {"p_default": None}, "Volumes": None, "Runtime": None}
    out = check_create(POLICY, sdk_quirk, POLICY.networks, IMAGE)
    assert "Runtime" not in out and "Volumes" not in out            # null unknowns are dropped
    assert out["HostConfig"]["CapDrop"] == ["ALL"]


@pytest.mark.parametrize("extra, why", [
    ({"Host_MaskedPaths": []}, "MaskedPaths"), ({"Host_ReadonlyPaths": []}, "ReadonlyPaths"),
    ({"Host_MaskedPaths": ["/proc/kcore"]}, "MaskedPaths"),
    ({"Host_Privileged": True}, "Privileged"), ({"Host_CapAdd": ["NET_ADMIN"]}, "CapAdd"),
    ({"Host_CapDrop": ["NET_RAW"]}, "CapDrop"), ({"Host_CapDrop": None}, "CapDrop"),
    ({"Host_SecurityOpt": ["no-new-privileges", "apparmor=unconfined"]}, "security option"),
    ({"Host_SecurityOpt": None}, "SecurityOpt"), ({"Host_SecurityOpt": ["no-new-privileges:false"]}, "security"),
    ({"Host_OomScoreAdj": -500}, "OomScoreAdj"), ({"Host_OomScoreAdj": True}, "OomScoreAdj"),
    ({"Host_Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 1}]}, "Ulimits"),
    ({"Host_Tmpfs": {"/run": "exec"}}, "Tmpfs"), ({"Host_Sysctls": {"net.x": "1"}}, "Sysctls"),
    ({"Host_PidMode": "host"}, "PidMode"), ({"Host_UsernsMode": "host"}, "UsernsMode"),
    ({"Host_IpcMode": "host"}, "IpcMode"), ({"Host_CgroupnsMode": "host"}, "CgroupnsMode"),
    ({"Host_NetworkMode": "host"}, "network"), ({"Host_NetworkMode": "container:abc"}, "another container"),
    ({"Host_Binds": ["/:/host"]}, "Binds"), ({"Host_Devices": [{"PathOnHost": "/dev/sda"}]}, "Devices"),
    ({"Host_Runtime": "runc-custom"}, "Runtime"), ({"Host_BlkioWeight": 10}, "BlkioWeight"),
    ({"Host_ShmSize": 2**40}, "ShmSize"), ({"Host_LogConfig": {"Type": "syslog"}}, "LogConfig"),
    ({"Privileged": True}, "Privileged"), ({"Binds": ["/:/h"]}, "Binds"),       # legacy top-level
    ({"User": "+0"}, "signed"), ({"User": "toor"}, "uid 0"), ({"User": 0}, "User must be a string"),
    ({"Volumes": {"/data": {}}}, "Volumes"), ({"Image": "other"}, "image"),
    ({"Labels": {"x": "1", "com.docker.compose.project": "p"}}, "labels"),
    ({"HostConfig": None}, "HostConfig must set"),
    ({"NetworkingConfig": {"EndpointsConfig": {"p_default": {"DriverOpts": {"a": "b"}}}}}, "DriverOpts"),
])
def test_widening_bodies_are_refused(extra, why):
    reason = refusal(POLICY, body(**extra), POLICY.networks, IMAGE)
    assert reason and why in reason, reason


@pytest.mark.parametrize("raw", [
    b'{"Image": "img", "image": "img"}',
    b'{"HostConfig": {"CapDrop": ["ALL"]}, "hostconfig": null}',
    b'{"HostConfig": {"Privileged": false, "privileged": true}}',
])
def test_duplicate_keys_in_any_case_are_refused(raw):
    with pytest.raises(Refused, match="duplicate key"):
        parse_body(raw)


def test_non_json_numbers_refused():
    with pytest.raises(Refused):
        parse_body(b'{"HostConfig": {"Memory": NaN}}')
    assert parse_body(json.dumps(body()).encode()) == body()
