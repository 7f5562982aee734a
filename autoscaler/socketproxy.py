"""An allow-list proxy for the Docker API, so the autoscaler never holds the raw socket.

Whoever can reach ``/var/run/docker.sock`` can create a privileged container with ``/``
mounted: root on the host. Prefix-based proxies (Tecnativa's) cannot stop that once
``POST /containers/create`` is allowed, and no proxy image can be pulled here, so this
one is small and strict. It forwards only:

- ``GET /_ping``, ``GET /version`` (the SDK's handshake);
- ``GET /containers/json`` -- the answer is filtered down to the allowed containers;
- ``GET /containers/{id}/json``, ``POST /containers/{id}/start|stop|kill``,
  ``DELETE /containers/{id}`` -- only for a container carrying every required label;
- ``POST /containers/create`` -- only a body that :mod:`autoscaler.proxy_policy` allows:
  the configured image with the required labels (others only under
  ``com.docker.compose.`` / ``elastiq.``), on an allowed network, with ``CapDrop: ["ALL"]``
  and ``no-new-privileges``, as a user the image maps to a non-zero uid (read from the
  image's ``/etc/passwd``, cached per image id), and nothing that widens the container's
  power (an allow-list: every other key must be null). The engine gets the checked body
  re-encoded, never the client's bytes.

With ``ELASTIQ_PROXY_SCOPE=services`` (for the swarm backend, on a manager) it forwards
instead only ``GET /_ping``, ``/version``, ``/services`` and ``/tasks`` (filtered to the
services carrying every required label, and their tasks), ``GET /services/{id}`` of such a
service, and ``POST /services/{id}/update?version=N`` whose body is that service's current
spec with only the replica count changed, at most ``ELASTIQ_PROXY_MAX_REPLICAS``
(:mod:`autoscaler.proxy_services`). No container, node, secret or swarm call at all.

Lifecycle calls carry no body (old API versions let ``start`` set a HostConfig), and API
versions below 1.24 are refused. Everything else is answered ``403`` with the reason, and every call is logged.

    elastiq-socketproxy: python -m autoscaler.socketproxy
      ELASTIQ_PROXY_LISTEN=0.0.0.0:2375          (default 127.0.0.1:2375)
      ELASTIQ_PROXY_UPSTREAM=/var/run/docker.sock
      ELASTIQ_PROXY_IMAGE=elastiq:latest          (required)
      ELASTIQ_PROXY_LABELS=com.docker.compose.project=p,com.docker.compose.service=worker (required)
      ELASTIQ_PROXY_NETWORKS=p_default            (default: the networks of the allowed containers)
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import re
import socket
import sys
import tarfile
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

from autoscaler.proxy_policy import (
    ImageUsers,
    Policy,
    Refused,
    check_create,
    parse_body,
    refusal,
)
from autoscaler.proxy_services import check_service_update, only_version_query, owns_service

__all__ = ["ImageUsers", "Policy", "Proxy", "Upstream", "check_create", "refusal", "serve"]

log = logging.getLogger("elastiq.socketproxy")

MAX_BODY = 1 << 20
MIN_API = (1, 24)
PROBE_LABEL = "elastiq.proxy-probe"
_VERSION = re.compile(r"^/v(\d+)\.(\d+)(?=/)")
_SERVICE = re.compile(r"^/services/([A-Za-z0-9][A-Za-z0-9_.-]*)(/update)?$")
_CONTAINER = re.compile(r"^/containers/([A-Za-z0-9][A-Za-z0-9_.-]*)(/json|/start|/stop|/kill)?$")


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


class ImageUserCache:
    """The users of the worker image, read from its own /etc/passwd and /etc/group.

    A container is created from the image (never started), the two files are copied out
    of it (``GET /containers/{id}/archive``) and it is removed. Cached per image id, so a
    rebuilt image is read again.
    """

    def __init__(self, upstream: Upstream):
        self.upstream = upstream
        self._by_id: dict[str, ImageUsers] = {}
        self._lock = threading.Lock()

    def get(self, image: str) -> ImageUsers:
        status, _, data = self.upstream.request("GET", f"/images/{quote(image, safe='')}/json")
        if status != 200:
            raise Refused(f"image {image!r} cannot be inspected (HTTP {status})")
        info = json.loads(data)
        with self._lock:
            if info["Id"] not in self._by_id:
                default = (info.get("Config") or {}).get("User") or ""
                passwd, group = self._read(image, ("/etc/passwd", "/etc/group"))
                self._by_id[info["Id"]] = ImageUsers.parse(default, passwd, group)
            return self._by_id[info["Id"]]

    def _read(self, image: str, paths: tuple[str, ...]) -> list[str]:
        probe = {"Image": image, "Cmd": ["true"], "NetworkDisabled": True, "Labels": {PROBE_LABEL: "1"},
                 "HostConfig": {"NetworkMode": "none", "CapDrop": ["ALL"],
                                "SecurityOpt": ["no-new-privileges"]}}
        status, _, data = self.upstream.request("POST", "/containers/create", json.dumps(probe).encode(),
                                                {"Content-Type": "application/json"})
        if status != 201:
            raise Refused(f"cannot read the users of image {image!r} (HTTP {status})")
        ident = json.loads(data)["Id"]
        try:
            return [self._file(ident, path) for path in paths]
        finally:
            self.upstream.request("DELETE", f"/containers/{ident}?force=1&v=1")

    def _file(self, ident: str, path: str) -> str:
        status, _, data = self.upstream.request("GET", f"/containers/{ident}/archive?path={quote(path)}")
        if status == 404:
            return ""
        if status != 200:
            raise Refused(f"cannot read {path} of the image (HTTP {status})")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            if member is None or not member.isfile() or member.size > MAX_BODY:
                raise Refused(f"{path} of the image is not a regular file")
            return tar.extractfile(member).read().decode("utf-8", "replace")


class Proxy:
    """The decision for one request; ``handle`` returns (status, headers, body)."""

    def __init__(self, policy: Policy, upstream: Upstream):
        self.policy = policy
        self.upstream = upstream
        self.image_users = ImageUserCache(upstream)

    def allowed_networks(self) -> frozenset[str]:
        """The configured networks; else those of the allowed containers (never host)."""
        if self.policy.networks:
            return self.policy.networks
        nets: set[str] = set()
        for c in self._owned_list(all_=True):
            nets |= set(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())
        return frozenset(nets - {"host"})

    def _owned_list(self, all_: bool) -> list[dict]:
        status, _, data = self.upstream.request("GET", "/containers/json?all=1" if all_ else "/containers/json")
        return [c for c in json.loads(data) if self.policy.owns(c.get("Labels"))] if status == 200 else []

    def create(self, raw_path: str, body: bytes):
        try:
            checked = check_create(self.policy, parse_body(body or b"null"), self.allowed_networks(),
                                   self.image_users.get(self.policy.image))
        except Refused as exc:
            return _refuse(str(exc))
        return self.upstream.request("POST", raw_path, json.dumps(checked).encode(),
                                     {"Content-Type": "application/json"})

    def handle(self, method: str, raw_path: str, body: bytes, headers: Mapping[str, str]):
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        version = _VERSION.match(path)
        if version and (int(version.group(1)), int(version.group(2))) < MIN_API:
            return _refuse(f"API version {version.group(0)[1:]} is too old (>= 1.24)")
        path = _VERSION.sub("", path)
        forward = lambda: self.upstream.request(method, raw_path, None, headers)
        if self.policy.scope == "services":
            return self.services(method, path, parts.query, raw_path, body, forward)
        if method == "POST" and path == "/containers/create":
            return self.create(raw_path, body)
        if body:
            return _refuse(f"{method} {path} with a request body is not allowed")
        if method in ("GET", "HEAD") and path in ("/_ping", "/version"):
            return forward()
        if method == "GET" and path == "/containers/json":
            status, hdrs, data = forward()
            if status == 200:
                data = json.dumps([c for c in json.loads(data) if self.policy.owns(c.get("Labels"))]).encode()
            return status, hdrs, data
        m = _CONTAINER.match(path)
        if m:
            return self._lifecycle(method, m.group(1), m.group(2) or "", path, forward)
        return _refuse(f"{method} {path} is not allowed")

    def _lifecycle(self, method: str, ident: str, action: str, path: str, forward):
        ok = (method == "GET" and action == "/json") or (method == "POST" and action in ("/start", "/stop", "/kill")) \
            or (method == "DELETE" and action == "")
        if not ok:
            return _refuse(f"{method} {path} is not allowed")
        labels, _ = self.upstream.labels(ident)
        if labels is None:
            return forward()          # let the engine answer 404
        if not self.policy.owns(labels):
            return _refuse(f"container {ident[:12]} is not one this proxy manages")
        return forward()


    # -- services scope (the swarm backend): autoscaler/proxy_services.py

    def services(self, method: str, path: str, query: str, raw_path: str, body: bytes, forward):
        m = _SERVICE.match(path)
        if method == "POST" and m and m.group(2):
            return self._update_service(m.group(1), query, raw_path, body)
        if body:
            return _refuse(f"{method} {path} with a request body is not allowed")
        if method in ("GET", "HEAD") and path in ("/_ping", "/version"):
            return forward()
        if method == "GET" and path in ("/services", "/tasks"):
            status, hdrs, data = forward()
            if status == 200:
                rows = json.loads(data)
                if path == "/services":
                    rows = [sv for sv in rows if owns_service(self.policy, sv)]
                else:
                    owned = {sv["ID"] for sv in self._owned_services()}
                    rows = [t for t in rows if t.get("ServiceID") in owned]
                data = json.dumps(rows).encode()
            return status, hdrs, data
        if method == "GET" and m:
            status, _, data = self.upstream.request("GET", f"/services/{quote(m.group(1), safe='')}")
            if status == 200 and not owns_service(self.policy, json.loads(data)):
                return _refuse(f"service {m.group(1)[:12]} is not one this proxy manages")
            return forward()
        return _refuse(f"{method} {path} is not allowed")

    def _owned_services(self) -> list[dict]:
        status, _, data = self.upstream.request("GET", "/services")
        return [sv for sv in json.loads(data) if owns_service(self.policy, sv)] if status == 200 else []

    def _update_service(self, ident: str, query: str, raw_path: str, body: bytes):
        try:
            version = only_version_query(query)
            status, hdrs, data = self.upstream.request("GET", f"/services/{quote(ident, safe='')}")
            if status != 200:
                return status, hdrs, data
            service = json.loads(data)
            if int((service.get("Version") or {}).get("Index", -1)) != version:
                raise Refused(f"update out of sequence: version {version} is not the service's "
                              f"{(service.get('Version') or {}).get('Index')}")
            checked = check_service_update(self.policy, service, parse_body(body or b"null"))
        except Refused as exc:
            return _refuse(str(exc))
        return self.upstream.request("POST", raw_path, json.dumps(checked).encode(),
                                     {"Content-Type": "application/json"})


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
    policy = Policy.from_env(os.environ)
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
