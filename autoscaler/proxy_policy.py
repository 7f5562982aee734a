"""What a container created through the Docker API proxy may be: an allow-list (pure).

Used by :mod:`autoscaler.socketproxy` on every ``POST /containers/create``. The body is
parsed strictly (:func:`parse_body`: no duplicate keys, not even ones that differ only in
case -- the engine matches JSON keys case-insensitively and keeps the last), checked key by
key against :data:`CONFIG_RULES` / :data:`HOST_RULES` (a key not listed there must be
``null``; it is dropped), and :func:`check_create` returns the canonical body the proxy
forwards -- never the client's bytes, so the engine decodes exactly what was checked.

Required of every container: the configured image and labels, an allowed network,
``CapDrop: ["ALL"]``, ``SecurityOpt`` with ``no-new-privileges`` (and nothing else), and a
user that resolves, against the image's own ``/etc/passwd``, to a non-zero uid
(:func:`resolve_uid`; an empty ``User`` means the image's default user).
Refused: privileged mode, added capabilities, binds, mounts, volumes, devices, host or
container namespaces, published ports, ``MaskedPaths``/``ReadonlyPaths`` overrides (an
empty list unmasks ``/proc``), ``Tmpfs``, ``Ulimits``, a negative ``OomScoreAdj``, sysctls,
extra groups, runtimes -- and anything else not on the list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autoscaler.proxy_users import ImageUsers, Refused, resolve_uid

__all__ = ["ImageUsers", "Policy", "Refused", "check_create", "parse_body", "refusal"]

LABEL_PREFIXES = ("com.docker.compose.", "elastiq.")
NO_NEW_PRIVILEGES = ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true")
MAX_SHM_BYTES = 2**31


SCOPES = ("containers", "services")


@dataclass(frozen=True)
class Policy:
    image: str
    labels: Mapping[str, str]
    networks: frozenset[str] = field(default_factory=frozenset)   # empty: learned from containers
    # "containers": the docker/compose backends' calls; "services": the swarm backend's
    # (read services and tasks, change a labelled service's replica count: proxy_services.py)
    scope: str = "containers"
    max_replicas: int = 0                                          # services scope: highest count allowed

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Policy:
        from elastiq.errors import ConfigError

        image = env.get("ELASTIQ_PROXY_IMAGE", "")
        scope = env.get("ELASTIQ_PROXY_SCOPE", "containers")
        if scope not in SCOPES:
            raise ConfigError(f"ELASTIQ_PROXY_SCOPE must be one of {SCOPES}, got {scope!r}")
        labels = {}
        for pair in (p.strip() for p in env.get("ELASTIQ_PROXY_LABELS", "").split(",")):
            key, sep, value = pair.partition("=")
            if pair and (not sep or not key):
                raise ConfigError(f"ELASTIQ_PROXY_LABELS: {pair!r} is not key=value")
            if pair:
                labels[key] = value
        if scope == "services":
            raw = env.get("ELASTIQ_PROXY_MAX_REPLICAS", "")
            if not raw.isdigit() or int(raw) < 1 or not labels:
                raise ConfigError("services scope: ELASTIQ_PROXY_LABELS (k=v,...) and ELASTIQ_PROXY_MAX_REPLICAS "
                                  f"(an integer >= 1, got {raw!r}) are required")
            return cls(image, labels, frozenset(), scope, int(raw))
        if not image or not labels:
            raise ConfigError("ELASTIQ_PROXY_IMAGE and ELASTIQ_PROXY_LABELS (k=v,...) are required")
        nets = frozenset(n.strip() for n in env.get("ELASTIQ_PROXY_NETWORKS", "").split(",") if n.strip())
        return cls(image, labels, nets)

    def owns(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(labels.get(k) == v for k, v in self.labels.items())


# --- strict JSON


def parse_body(raw: bytes) -> Any:
    """JSON with no duplicate keys (compared case-insensitively) and no NaN/Infinity."""
    def pairs(items):
        seen: set[str] = set()
        for key, _ in items:
            if key.lower() in seen:
                raise Refused(f"duplicate key {key!r} (keys are matched case-insensitively)")
            seen.add(key.lower())
        return dict(items)

    def constant(name):
        raise Refused(f"{name} is not a JSON number")

    try:
        return json.loads(raw, object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError):
        raise Refused("body is not JSON") from None


# --- value rules: each returns the value to forward or raises Refused


def _null(key):
    def rule(v):
        if v is not None:
            raise Refused(f"{key} is not allowed")
        return None
    return rule


def _empty(key):
    def rule(v):
        if v not in (None, [], {}):
            raise Refused(f"{key} is not allowed")
        return None
    return rule


def _false(key):
    def rule(v):
        if v not in (None, False):
            raise Refused(f"{key} is not allowed")
        return None
    return rule


def _one_of(key, *allowed):
    def rule(v):
        if v is not None and v not in allowed:
            raise Refused(f"{key} {v!r} is not allowed")
        return v
    return rule


def _int(key, lo=0, hi=2**63 - 1):
    def rule(v):
        if v is None:
            return None
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise Refused(f"{key} must be an integer in [{lo}, {hi}], got {v!r}")
        return v
    return rule


def _int_pair(key):
    def rule(v):
        if v is None:
            return None
        if not (isinstance(v, list) and len(v) == 2 and all(_int(key)(x) is not None for x in v)):
            raise Refused(f"{key} must be two integers")
        return v
    return rule


def _bool(key):
    def rule(v):
        if v is not None and not isinstance(v, bool):
            raise Refused(f"{key} must be true or false")
        return v
    return rule


def _str(key):
    def rule(v):
        if v is not None and not isinstance(v, str):
            raise Refused(f"{key} must be a string")
        return v
    return rule


def _strs(key, scalar_ok=False):
    def rule(v):
        if v is None or (scalar_ok and isinstance(v, str)):
            return v
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise Refused(f"{key} must be a list of strings")
        return v
    return rule


def _dict(key, rules: Mapping[str, Callable]):
    def rule(v):
        if v is None:
            return None
        if not isinstance(v, dict):
            raise Refused(f"{key} must be an object")
        return _apply(v, rules, f"{key}.")
    return rule


def _str_map(key):
    def rule(v):
        if v is None:
            return None
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise Refused(f"{key} must map strings to strings")
        return v
    return rule


def _apply(obj: dict, rules: Mapping[str, Callable], prefix: str = "") -> dict:
    """Check every key of ``obj`` with its rule; a key without one must be null (dropped)."""
    out = {}
    for key, value in obj.items():
        rule = rules.get(key)
        if rule is None:
            if value is not None:
                raise Refused(f"{prefix}{key} is not allowed")
            continue
        checked = rule(value)
        if checked is not None:
            out[key] = checked
    return out


def _security_opt(v):
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise Refused("SecurityOpt must be [\"no-new-privileges\"]")
    bad = [x for x in v if x not in NO_NEW_PRIVILEGES]
    if bad:
        raise Refused(f"security option {bad[0]!r} is not allowed (only no-new-privileges)")
    return v


def _cap_drop(v):
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.upper() == "ALL" for x in v):
        raise Refused("CapDrop must be [\"ALL\"]")
    return v


def _port_bindings(v):
    if v is None:
        return None
    if not isinstance(v, dict) or any(b not in (None, []) for b in v.values()):
        raise Refused("published ports are not allowed")
    return None


def _log_config(v):
    if v is None:
        return None
    if not isinstance(v, dict):
        raise Refused("LogConfig must be an object")
    out = _apply(v, {"Type": _one_of("LogConfig.Type", "", "json-file", "local"),
                     "Config": _str_map("LogConfig.Config")}, "LogConfig.")
    stray = set(out.get("Config") or {}) - {"max-size", "max-file", "compress", "mode", "max-buffer-size"}
    if stray:
        raise Refused(f"LogConfig.Config {sorted(stray)} is not allowed")
    return out


HOST_RULES: dict[str, Callable] = {
    "NetworkMode": _str("NetworkMode"),
    "NanoCpus": _int("NanoCpus"), "CpuShares": _int("CpuShares"), "CpuQuota": _int("CpuQuota"),
    "CpuPeriod": _int("CpuPeriod"), "CpusetCpus": _str("CpusetCpus"), "CpusetMems": _str("CpusetMems"),
    "Memory": _int("Memory"), "MemoryReservation": _int("MemoryReservation"),
    "MemorySwap": _int("MemorySwap", lo=-1), "PidsLimit": _int("PidsLimit", lo=-1),
    "ShmSize": _int("ShmSize", hi=MAX_SHM_BYTES), "OomScoreAdj": _int("OomScoreAdj", hi=1000),
    "RestartPolicy": _dict("RestartPolicy", {
        "Name": _one_of("RestartPolicy.Name", "", "no", "on-failure", "unless-stopped", "always"),
        "MaximumRetryCount": _int("RestartPolicy.MaximumRetryCount")}),
    "LogConfig": _log_config,
    "SecurityOpt": _security_opt, "CapDrop": _cap_drop, "CapAdd": _empty("CapAdd"),
    "Init": _bool("Init"), "AutoRemove": _bool("AutoRemove"), "ReadonlyRootfs": _bool("ReadonlyRootfs"),
    "ConsoleSize": _int_pair("ConsoleSize"),
    "CgroupnsMode": _one_of("CgroupnsMode", "", "private"),
    "IpcMode": _one_of("IpcMode", "", "private", "none", "shareable"),
    "Isolation": _one_of("Isolation", "", "default"),
    "ExtraHosts": _strs("ExtraHosts"), "Dns": _strs("Dns"), "DnsOptions": _strs("DnsOptions"),
    "DnsSearch": _strs("DnsSearch"), "PortBindings": _port_bindings,
    "PublishAllPorts": _false("PublishAllPorts"), "Privileged": _false("Privileged"),
    "OomKillDisable": _false("OomKillDisable"),
    # present only to say why; each must be null/empty
    **{k: _empty(k) for k in ("Binds", "Mounts", "Devices", "DeviceRequests", "DeviceCgroupRules",
                              "VolumesFrom", "GroupAdd", "Links", "Sysctls", "Tmpfs", "Ulimits")},
    **{k: _one_of(k, "") for k in ("PidMode", "UTSMode", "UsernsMode", "CgroupParent", "Runtime",
                                   "VolumeDriver")},
    "MaskedPaths": _null("MaskedPaths"), "ReadonlyPaths": _null("ReadonlyPaths"),
}


def _exposed_ports(v):
    if v is None:
        return None
    if not isinstance(v, dict) or any(x not in (None, {}) for x in v.values()):
        raise Refused("ExposedPorts must map ports to {}")
    return v


def _endpoints(v):
    if v is None:
        return None
    if not isinstance(v, dict):
        raise Refused("NetworkingConfig.EndpointsConfig must be an object")
    endpoint = {"Aliases": _strs("Aliases")}
    return {net: (None if cfg is None else _dict(f"EndpointsConfig.{net}", endpoint)(cfg))
            for net, cfg in v.items()}


_HEALTHCHECK = {"Test": _strs("Healthcheck.Test"), "Retries": _int("Healthcheck.Retries"),
                **{k: _int(f"Healthcheck.{k}") for k in ("Interval", "Timeout", "StartPeriod", "StartInterval")}}

CONFIG_RULES: dict[str, Callable] = {
    "Image": _str("Image"), "User": _str("User"), "Labels": _str_map("Labels"),
    "Env": _strs("Env"), "Cmd": _strs("Cmd", scalar_ok=True), "Entrypoint": _strs("Entrypoint", scalar_ok=True),
    "Healthcheck": _dict("Healthcheck", _HEALTHCHECK), "StopSignal": _str("StopSignal"),
    "StopTimeout": _int("StopTimeout"), "WorkingDir": _str("WorkingDir"), "Hostname": _str("Hostname"),
    "Domainname": _str("Domainname"), "MacAddress": _str("MacAddress"), "ExposedPorts": _exposed_ports,
    **{k: _bool(k) for k in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce",
                             "NetworkDisabled", "ArgsEscaped")},
    "Volumes": _empty("Volumes"), "OnBuild": _empty("OnBuild"),
    "HostConfig": _dict("HostConfig", HOST_RULES),
    "NetworkingConfig": _dict("NetworkingConfig", {"EndpointsConfig": _endpoints}),
}


def _check_labels(policy: Policy, labels: Mapping[str, str]) -> None:
    if not policy.owns(labels):
        raise Refused(f"labels must include {dict(policy.labels)}")
    if labels.get("com.docker.compose.oneoff", "False") != "False":
        raise Refused("one-off containers are not allowed")
    stray = [k for k in labels if not k.startswith(LABEL_PREFIXES)]
    if stray:
        raise Refused(f"labels {stray} are not allowed")


def _check_network(body: dict, networks: frozenset[str]) -> None:
    mode = body["HostConfig"].get("NetworkMode") or ""
    endpoints = set(((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).keys())
    wanted = ({mode} if mode else set()) | endpoints
    if any(n.startswith("container:") for n in wanted):
        raise Refused("joining another container's network is not allowed")
    if not wanted or not wanted <= networks:
        raise Refused(f"network {sorted(wanted) or 'default'} is not one of {sorted(networks)}")


def check_create(policy: Policy, body: Any, networks: frozenset[str], users: ImageUsers) -> dict:
    """The canonical body to forward for this ``POST /containers/create``; raises Refused."""
    if not isinstance(body, dict):
        raise Refused("body is not a JSON object")
    out = _apply(body, CONFIG_RULES)
    if out.get("Image") != policy.image:
        raise Refused(f"image {out.get('Image')!r} is not the worker image {policy.image!r}")
    _check_labels(policy, out.get("Labels") or {})
    host = out.get("HostConfig")
    if not host or "CapDrop" not in host or "SecurityOpt" not in host:
        raise Refused('HostConfig must set CapDrop ["ALL"] and SecurityOpt ["no-new-privileges"]')
    _check_network(out, networks)
    resolve_uid(out.get("User"), users)
    return out


def refusal(policy: Policy, body: Any, networks: frozenset[str], users: ImageUsers) -> str | None:
    """Why ``body`` is refused, or None (:func:`check_create` without the canonical body)."""
    try:
        check_create(policy, body, networks, users)
    except Refused as exc:
        return str(exc)
    return None
