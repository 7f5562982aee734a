"""An allow-list proxy for the Docker API, so the autoscaler never holds the raw socket.

Whoever can reach ``/var/run/docker.sock`` can create a privileged container with ``/``
mounted: root on the host. Prefix-based proxies (Tecnativa's) cannot stop that once
``POST /containers/create`` is allowed, and no proxy image can be pulled here, so this
one is small and strict. It forwards only:

- ``GET /_ping``, ``GET /version`` (the SDK's handshake);
- ``GET /containers/json`` -- the answer is filtered down to the allowed containers;
- ``GET /containers/{id}/json``, ``POST /containers/{id}/start|stop|kill``,
  ``DELETE /containers/{id}`` -- only for a container carrying every required label;
- ``POST /containers/create`` -- only for the configured image, with the required labels
  (other labels only under ``com.docker.compose.`` / ``elastiq.``), on an allowed network,
  and nothing that widens the container's power: no ``Privileged``, binds, mounts,
  volumes, devices, added capabilities, host PID/IPC/UTS/userns, published ports,
  security options other than ``no-new-privileges``, or root user.

Everything else is answered ``403`` with the reason, and every call is logged.

    elastiq-socketproxy: python -m autoscaler.socketproxy
      ELASTIQ_PROXY_LISTEN=0.0.0.0:2375          (default 127.0.0.1:2375)
      ELASTIQ_PROXY_UPSTREAM=/var/run/docker.sock
      ELASTIQ_PROXY_IMAGE=elastiq:latest          (required)
      ELASTIQ_PROXY_LABELS=com.docker.compose.project=p,com.docker.compose.service=worker (required)
      ELASTIQ_PROXY_NETWORKS=p_default            (default: the networks of the allowed containers)
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping
from urllib.parse import unquote, urlsplit

from elastiq.errors import ConfigError

log = logging.getLogger("elastiq.socketproxy")

MAX_BODY = 1 << 20
LABEL_PREFIXES = ("com.docker.compose.", "elastiq.")
# HostConfig keys a created container may set; any other key must be empty/false/zero.
SAFE_HOST_KEYS = {
    "NetworkMode", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "CpusetCpus", "Memory",
    "MemorySwap", "MemoryReservation", "RestartPolicy", "LogConfig", "SecurityOpt", "CapDrop",
    "Init", "ShmSize", "PidsLimit", "AutoRemove", "ReadonlyRootfs", "Tmpfs", "OomScoreAdj",
    "MaskedPaths", "ReadonlyPaths", "ConsoleSize", "CgroupnsMode", "IpcMode", "Isolation",
    "Ulimits", "Links", "ExtraHosts", "Dns", "DnsOptions", "DnsSearch", "PortBindings",
}
SAFE_CONFIG_KEYS = {
    "Image", "Env", "Cmd", "Entrypoint", "Labels", "Healthcheck", "StopSignal", "StopTimeout",
    "User", "WorkingDir", "Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr",
    "Tty", "OpenStdin", "StdinOnce", "HostConfig", "NetworkingConfig", "ExposedPorts",
    "NetworkDisabled", "ArgsEscaped", "OnBuild", "MacAddress", "Volumes",
}
_VERSION = re.compile(r"^/v\d+\.\d+(?=/)")
_CONTAINER = re.compile(r"^/containers/([A-Za-z0-9][A-Za-z0-9_.-]*)(/json|/start|/stop|/kill)?$")


@dataclass(frozen=True)
class Policy:
    image: str
    labels: Mapping[str, str]
    networks: frozenset[str] = field(default_factory=frozenset)   # empty: learned from containers

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Policy":
        env = os.environ if env is None else env
        image = env.get("ELASTIQ_PROXY_IMAGE", "")
        labels = dict(_pair(p) for p in env.get("ELASTIQ_PROXY_LABELS", "").split(",") if p.strip())
        if not image or not labels:
            raise ConfigError("ELASTIQ_PROXY_IMAGE and ELASTIQ_PROXY_LABELS (k=v,...) are required")
        nets = frozenset(n.strip() for n in env.get("ELASTIQ_PROXY_NETWORKS", "").split(",") if n.strip())
        return cls(image, labels, nets)

    def owns(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(labels.get(k) == v for k, v in self.labels.items())


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.strip().partition("=")
    if not sep or not key:
        raise ConfigError(f"ELASTIQ_PROXY_LABELS: {text!r} is not key=value")
    return key, value


def _empty(value) -> bool:
    return value in (None, "", [], {}, False, 0)


def check_create(policy: Policy, body: dict, networks: frozenset[str]) -> str | None:
    """Why this ``POST /containers/create`` body is refused, or None if it is allowed."""
    if not isinstance(body, dict):
        return "body is not a JSON object"
    for key, value in body.items():
        if key not in SAFE_CONFIG_KEYS and not _empty(value):
            return f"{key} is not allowed"
    if body.get("Image") != policy.image:
        return f"image {body.get('Image')!r} is not the worker image {policy.image!r}"
    labels = body.get("Labels") or {}
    if not policy.owns(labels):
        return f"labels must include {dict(policy.labels)}"
    if labels.get("com.docker.compose.oneoff", "False") != "False":
        return "one-off containers are not allowed"
    stray = [k for k in labels if not k.startswith(LABEL_PREFIXES)]
    if stray:
        return f"labels {stray} are not allowed"
    if not _empty(body.get("Volumes")):
        return "volumes are not allowed"
    user = str(body.get("User") or "")
    if user.split(":")[0] in ("root", "0"):
        return "running as root is not allowed"
    host = body.get("HostConfig") or {}
    for key, value in host.items():
        if key not in SAFE_HOST_KEYS and not _empty(value):
            return f"HostConfig.{key} is not allowed"
    for opt in host.get("SecurityOpt") or []:
        if opt not in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"):
            return f"security option {opt!r} is not allowed"
    if host.get("IpcMode") not in (None, "", "private", "none", "shareable"):
        return f"IpcMode {host.get('IpcMode')!r} is not allowed"
    if host.get("CgroupnsMode") not in (None, "", "private"):
        return "CgroupnsMode host is not allowed"
    if any(_empty(v) is False for v in (host.get("PortBindings") or {}).values()):
        return "published ports are not allowed"
    mode = host.get("NetworkMode") or ""
    endpoints = set(((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).keys())
    wanted = ({mode} if mode else set()) | endpoints
    if not wanted or not wanted <= networks:
        return f"network {sorted(wanted) or 'default'} is not one of {sorted(networks)}"
    return None


class Upstream:
    """HTTP over the Docker unix socket (or tcp://host:port)."""

    def __init__(self, address: str, timeout_s: float = 600.0):
        self.address = address
        self.timeout_s = timeout_s

    def connection(self) -> http.client.HTTPConnection:
        if self.address.startswith("tcp://"):
            host, _, port = self.address[6:].partition(":")
            return http.client.HTTPConnection(host, int(port or 2375), timeout=self.timeout_s)
        conn = http.client.HTTPConnection("docker", timeout=self.timeout_s)
        path = self.address.removeprefix("unix://")

        def connect() -> None:
            conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.sock.settimeout(self.timeout_s)
            conn.sock.connect(path)

        conn.connect = connect   # type: ignore[method-assign]
        return conn

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, dict, bytes]:
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k: v for k, v in resp.getheaders()
                                 if k.lower() not in ("transfer-encoding", "connection", "content-length")}, data
        finally:
            conn.close()

    def labels(self, ident: str) -> tuple[dict | None, dict]:
        status, _, data = self.request("GET", f"/containers/{ident}/json")
        if status != 200:
            return None, {}
        info = json.loads(data)
        return (info.get("Config") or {}).get("Labels") or {}, info


class Proxy:
    """The decision for one request; ``handle`` returns (status, headers, body)."""

    def __init__(self, policy: Policy, upstream: Upstream):
        self.policy = policy
        self.upstream = upstream

    def allowed_networks(self) -> frozenset[str]:
        if self.policy.networks:
            return self.policy.networks
        nets: set[str] = set()
        for c in self._owned_list(all_=True):
            nets |= set(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())
        return frozenset(nets)

    def _owned_list(self, all_: bool) -> list[dict]:
        status, _, data = self.upstream.request("GET", "/containers/json?all=1" if all_ else "/containers/json")
        return [c for c in json.loads(data) if self.policy.owns(c.get("Labels"))] if status == 200 else []

    def handle(self, method: str, raw_path: str, body: bytes, headers: Mapping[str, str]):
        parts = urlsplit(raw_path)
        path = _VERSION.sub("", unquote(parts.path))
        forward = lambda: self.upstream.request(method, raw_path, body or None, headers)  # noqa: E731
        if method in ("GET", "HEAD") and path in ("/_ping", "/version"):
            return forward()
        if method == "GET" and path == "/containers/json":
            status, hdrs, data = forward()
            if status == 200:
                data = json.dumps([c for c in json.loads(data) if self.policy.owns(c.get("Labels"))]).encode()
            return status, hdrs, data
        if method == "POST" and path == "/containers/create":
            try:
                reason = check_create(self.policy, json.loads(body or b"null"), self.allowed_networks())
            except ValueError:
                reason = "body is not JSON"
            return forward() if reason is None else _refuse(reason)
        m = _CONTAINER.match(path)
        if m:
            action = m.group(2) or ""
            ok = (method == "GET" and action == "/json") or (method == "POST" and action in ("/start", "/stop", "/kill")) \
                or (method == "DELETE" and action == "")
            if not ok:
                return _refuse(f"{method} {path} is not allowed")
            labels, _ = self.upstream.labels(m.group(1))
            if labels is None:
                return forward()          # let the engine answer 404
            if not self.policy.owns(labels):
                return _refuse(f"container {m.group(1)[:12]} is not one this proxy manages")
            return forward()
        return _refuse(f"{method} {path} is not allowed")


def _refuse(reason: str):
    return 403, {"Content-Type": "application/json"}, json.dumps({"message": f"socketproxy: {reason}"}).encode()


def make_handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY or self.headers.get("Transfer-Encoding"):
                status, hdrs, data = _refuse("request body too large or chunked")
            else:
                body = self.rfile.read(length) if length else b""
                fwd = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "user-agent")}
                try:
                    status, hdrs, data = proxy.handle(self.command, self.path, body, fwd)
                except (OSError, ValueError, http.client.HTTPException) as exc:
                    status, hdrs, data = 502, {"Content-Type": "application/json"}, \
                        json.dumps({"message": f"socketproxy: upstream error: {exc}"}).encode()
            log.info("%s %s -> %d%s", self.command, self.path, status,
                     f" ({json.loads(data).get('message')})" if status == 403 else "")
            self.send_response(status)
            for k, v in hdrs.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _serve

        def log_message(self, *args) -> None:   # logged in _serve instead
            pass

    return Handler


def serve(policy: Policy, listen: str = "127.0.0.1:2375", upstream: str = "/var/run/docker.sock") -> ThreadingHTTPServer:
    host, _, port = listen.rpartition(":")
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), make_handler(Proxy(policy, Upstream(upstream))))
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("ELASTIQ_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    policy = Policy.from_env()
    listen = os.environ.get("ELASTIQ_PROXY_LISTEN", "127.0.0.1:2375")
    server = serve(policy, listen, os.environ.get("ELASTIQ_PROXY_UPSTREAM", "/var/run/docker.sock"))
    log.info("docker socket proxy on %s for image %s, labels %s", listen, policy.image, dict(policy.labels))
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
