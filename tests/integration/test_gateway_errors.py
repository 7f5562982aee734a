"""Every error row of the gateway through real HTTP: a real uvicorn process, real Redis,
real workers. Each refused request is checked to have queued nothing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from elastiq import contract
from elastiq.local import procs
from tests.conftest import ROOT
from tests.integration.gateway_server import TOKEN, GatewayProcess, queued_jobs

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway(redis_url, models_env, tmp_path):
    gw = GatewayProcess(redis_url, tmp_path, env={"ELASTIQ_GATEWAY_MAX_BODY_BYTES": "200000"}).start()
    yield gw
    gw.stop()


def error_of(r: httpx.Response, status: int, kind: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == status and body["message"]
    if kind:
        assert body["type"] == kind, body
    return body


@pytest.mark.parametrize("path,body,kind", [
    ("/v1/models/debug/infer", {"inputs": []}, "EmptyInputError"),
    ("/v1/models/debug/infer", {"inputs": ["ok", 3]}, "ValidationError"),
    ("/v1/models/debug/infer", {"inputs": "a string"}, "ValidationError"),
    ("/v1/models/debug/infer", {"inputs": ["   "]}, "EmptyInputError"),
    ("/v1/models/debug/infer", {"inputs": ["\ud800"]}, "InputTypeError"),
    ("/v1/models/debug/infer", {"inputs": ["x"], "params": {"bogus": 1}}, "BadParamsError"),
    ("/v1/models/debug/infer", {"inputs": ["x"], "priority": 10}, "ValidationError"),
    ("/v1/models/debug/infer", {"inputs": ["x"], "deadline_s": -1}, "ValidationError"),
    ("/v1/models/debug/infer", {"inputs": ["x"], "surprise": 1}, "ValidationError"),
    ("/v1/models/debug/jobs", {"inputs": ["x"], "params": {"sleep_ms": "long"}}, "BadParamsError"),
    ("/v1/embeddings", {"model": "minilm", "input": [101, 2023, 102]}, "InputTypeError"),
    ("/v1/embeddings", {"model": "minilm", "input": [[101, 102]]}, "InputTypeError"),
    ("/v1/embeddings", {"model": "minilm", "input": "x", "dimensions": 128}, "BadParamsError"),
    ("/v1/embeddings", {"model": "minilm", "input": "x", "encoding_format": "int8"}, "ValidationError"),
    ("/v1/embeddings", {"model": "debug", "input": "x"}, "BadParamsError"),
    ("/v1/embeddings", {"model": "minilm", "input": ""}, "EmptyInputError"),
    ("/v1/embeddings", {"input": "x"}, "ValidationError"),
])
def test_400_bad_input_queues_nothing(gateway, redis, path, body, kind):
    r = httpx.post(gateway.url + path, headers={**gateway.headers, "Content-Type": "application/json"},
                   content=json.dumps(body))          # ASCII escapes: a lone surrogate travels as \ud800
    error_of(r, 400, kind)
    assert queued_jobs(redis) == (0, 0)


def test_400_malformed_bodies(gateway, redis):
    h = {**gateway.headers, "Content-Type": "application/json"}
    for content in (b"{", b"\xff\xfe\x00", b"[" * 50_000 + b"]" * 50_000, b"null", b"[]", b'"x"'):
        error_of(httpx.post(gateway.url + "/v1/models/debug/infer", headers=h, content=content), 400)
    r = httpx.post(gateway.url + "/v1/embeddings", headers={**gateway.headers, "Content-Type": "text/plain"},
                   content=b'{"model": "minilm", "input": "x"}')
    assert "Content-Type: application/json" in error_of(r, 400, "ValidationError")["message"]
    assert queued_jobs(redis) == (0, 0)


def test_401_without_a_valid_token(gateway, redis):
    url = gateway.url + "/v1/models/debug/jobs"
    for headers in ({}, {"Authorization": "Bearer wrong-token-0000000000000"},
                    {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Bearer {TOKEN[:-1]}"}):
        r = httpx.post(url, headers=headers, json={"inputs": ["x"]})
        error_of(r, 401, "AuthenticationError")
        assert r.headers["www-authenticate"].startswith("Bearer")
    for path in ("/v1/models", "/metrics", "/openapi.json", "/v1/jobs/x"):
        error_of(httpx.get(gateway.url + path), 401)
    assert httpx.get(gateway.url + "/healthz").status_code == 200
    assert "access-control-allow-origin" not in httpx.options(
        url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}).headers
    assert queued_jobs(redis) == (0, 0)


def test_404_unknown_model_job_or_path(gateway, redis):
    h, url = gateway.headers, gateway.url
    error_of(httpx.post(url + "/v1/models/nope/infer", headers=h, json={"inputs": ["x"]}), 404, "UnknownModelError")
    error_of(httpx.post(url + "/v1/models/nope/jobs", headers=h, json={"inputs": ["x"]}), 404, "UnknownModelError")
    error_of(httpx.post(url + "/v1/embeddings", headers=h, json={"model": "nope", "input": "x"}), 404,
             "UnknownModelError")
    error_of(httpx.get(url + "/v1/jobs/6a1f0d2e-0000-4000-8000-000000000000", headers=h), 404, "UnknownJobError")
    error_of(httpx.get(url + "/v1/jobs/" + "x" * 300, headers=h), 404, "UnknownJobError")
    error_of(httpx.get(url + "/v2/nothing", headers=h), 404)
    error_of(httpx.delete(url + "/v1/embeddings", headers=h), 405)
    assert queued_jobs(redis) == (0, 0)


def raw_request(port: int, head: bytes, body_chunks=(), read_s: float = 10.0) -> tuple[bytes, int]:
    """Send a request by hand; read the answer concurrently. Returns (answer, body bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=read_s)
    answer = bytearray()

    def read():
        try:
            while chunk := sock.recv(65536):
                answer.extend(chunk)
        except OSError:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    sent = 0
    try:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass                                   # the server stopped reading: cut off
    reader.join(read_s)
    sock.close()
    return bytes(answer), sent


def test_413_before_the_body_is_read(gateway, redis):
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    # Content-Length over the limit: answered at once, not one body byte sent
    head = (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n" + auth +
            b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
    started = time.monotonic()
    answer, _ = raw_request(gateway.port, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"InputTooLargeError" in answer and time.monotonic() - started < 5
    # chunked, no length: counted as it streams in and cut off (50 MB offered, limit 200 kB)
    head = (b"POST /v1/models/debug/infer HTTP/1.1\r\nHost: x\r\n" + auth +
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * 65536
    chunks = (b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(800))
    answer, sent = raw_request(gateway.port, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 800 * 65536 / 4, sent          # the server closed long before the end
    # within the limit in bytes but too many items or too long a text: the job's own limits
    h = gateway.headers
    error_of(httpx.post(gateway.url + "/v1/models/debug/infer", headers=h, json={"inputs": ["x"] * 300}),
             413, "InputTooLargeError")
    error_of(httpx.post(gateway.url + "/v1/models/debug/infer", headers=h, json={"inputs": ["x" * 9000]}),
             413, "InputTooLargeError")
    error_of(httpx.post(gateway.url + "/v1/embeddings", headers=h, json={"model": "minilm", "input": ["x"] * 2049}),
             413, "InputTooLargeError")
    assert queued_jobs(redis) == (0, 0)
    assert httpx.get(gateway.url + "/healthz").status_code == 200


def test_429_when_the_backlog_passes_its_bound(redis_url, models_env, tmp_path, client, redis):
    gw = GatewayProcess(redis_url, tmp_path, env={"ELASTIQ_GATEWAY_MAX_BACKLOG": "3",
                                                  "ELASTIQ_GATEWAY_BACKLOG_REFRESH_S": "0.01"}).start()
    try:
        client.submit("debug", ["low priority"], priority=9)     # a priority sub-list counts too
        client.submit("debug", ["low priority"], priority=9)
        assert redis.llen(contract.queue_for("debug")) == 0
        url, h = gw.url + "/v1/models/debug", gw.headers
        assert httpx.post(url + "/jobs", headers=h, json={"inputs": ["third"]}).status_code == 202
        for path in ("/jobs", "/infer"):
            r = httpx.post(url + path, headers=h, json={"inputs": ["fourth"]})
            assert "3 jobs waiting" in error_of(r, 429, "BacklogFullError")["message"]
            assert r.headers["retry-after"] == "1"
        assert queued_jobs(redis) == (3, 3)
        # another model has its own backlog
        assert httpx.post(gw.url + "/v1/models/tiny-clf/jobs", headers=h, json={"inputs": ["x"]}).status_code == 202
    finally:
        gw.stop()


def test_503_when_redis_is_unreachable(models_env, tmp_path):
    dead = f"redis://127.0.0.1:{procs.free_port()}/0"
    gw = GatewayProcess(dead, tmp_path).start()
    try:
        h = gw.headers
        r = httpx.get(gw.url + "/healthz")
        assert r.status_code == 503 and r.json()["redis"] is False
        for method, path, body in (("POST", "/v1/models/debug/infer", {"inputs": ["x"]}),
                                   ("POST", "/v1/models/debug/jobs", {"inputs": ["x"]}),
                                   ("POST", "/v1/embeddings", {"model": "minilm", "input": "x"}),
                                   ("GET", "/v1/jobs/6a1f0d2e-0000-4000-8000-000000000000", None)):
            r = httpx.request(method, gw.url + path, headers=h, json=body, timeout=30)
            error_of(r, 503, "BrokerUnavailableError")
            assert r.headers["retry-after"] == "2"
        # bad input is still a 400, Redis or not
        error_of(httpx.post(gw.url + "/v1/models/debug/infer", headers=h, json={"inputs": []}), 400)
        assert gw.alive()
    finally:
        gw.stop()


def test_504_on_sync_timeout_and_the_job_is_not_lost(gateway, workers, redis):
    workers.start("debug", slots=2)
    h, url = gateway.headers, gateway.url
    r = httpx.post(url + "/v1/models/debug/infer", headers=h, timeout=30,
                   json={"inputs": ["slow"], "params": {"sleep_ms": 1500}, "timeout_s": 0.3})
    body = error_of(r, 504, "JobTimeoutError")
    assert body["job_url"] == f"/v1/jobs/{body['job_id']}" == r.headers["location"]
    assert body["job_id"] in body["message"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        view = httpx.get(url + body["job_url"], headers=h).json()
        if view["status"] == "done":
            break
        time.sleep(0.1)
    assert view["status"] == "done" and view["result"]["outputs"] == [4]


def test_502_when_the_job_fails_on_the_worker(gateway, workers):
    workers.start("debug", slots=2)
    r = httpx.post(gateway.url + "/v1/models/debug/infer", headers=gateway.headers, timeout=30,
                   json={"inputs": ["x"], "params": {"fail": "model said no"}})
    assert error_of(r, 502, "JobFailedError")["message"] == "model said no"
    r = httpx.post(gateway.url + "/v1/models/debug/jobs", headers=gateway.headers,
                   json={"inputs": ["!raise"]})
    job_url = r.headers["location"]
    for _ in range(100):
        view = httpx.get(gateway.url + job_url, headers=gateway.headers).json()
        if view["status"] != "queued" and view["status"] != "started":
            break
        time.sleep(0.1)
    assert view["status"] == "failed" and "debug model asked to raise" in view["error"]["message"]


def run_gateway_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "elastiq.cli", "gateway", *args], env=full, check=False,
                          capture_output=True, text=True, timeout=60)


def test_refuses_to_start_insecure(redis_url, tmp_path):
    p = run_gateway_cli("--port", str(procs.free_port()), env={"ELASTIQ_REDIS_URL": redis_url})
    assert p.returncode == 1 and "no gateway token" in p.stderr
    p = run_gateway_cli("--insecure-no-auth", "--host", "0.0.0.0", env={"ELASTIQ_REDIS_URL": redis_url})
    assert p.returncode == 1 and "loopback" in p.stderr
    p = run_gateway_cli(env={"ELASTIQ_REDIS_URL": redis_url, "ELASTIQ_GATEWAY_TOKENS": "short"})
    assert p.returncode == 1 and "shorter than 16" in p.stderr
    gw = GatewayProcess(redis_url, tmp_path, token=None, args=("--insecure-no-auth",)).start()
    try:
        assert httpx.get(gw.url + "/v1/models").status_code == 200       # explicitly open, loopback only
        rows = subprocess.run(["ss", "-ltnH", f"sport = :{gw.port}"], capture_output=True, text=True, check=False).stdout
        local = [line.split()[3] for line in rows.splitlines()]       # State Recv-Q Send-Q Local Peer
        assert local == [f"127.0.0.1:{gw.port}"], rows
    finally:
        gw.stop()
