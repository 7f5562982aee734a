"""Fuzz the running gateway (real uvicorn, real Redis) with malformed bodies and headers.

No worker runs, so every job that gets in stays queued and is counted. After each
request: a 4xx must have queued nothing (queue lists and job records unchanged); a 504
(a sync wait ran out) is the only 5xx allowed, and only for a request that was accepted
(its job is queued); the process must still be serving at the end.
"""

from __future__ import annotations

import json
import socket
import string
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.integration.gateway_server import TOKEN, GatewayProcess, queued_jobs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HTTP_EXAMPLES = 600
RAW_EXAMPLES = 150

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                         max_size=4), max_leaves=12)
texts = st.text(max_size=30) | st.sampled_from(["", "   ", "\ud800", "\x00", "x" * 9000, "ok text", "é" * 20])
inputs = json_values | texts | st.lists(texts, max_size=4) | st.lists(st.integers(), max_size=4) | \
    st.lists(st.just("x"), min_size=250, max_size=300)
params = json_values | st.dictionaries(st.sampled_from(["top_k", "sleep_ms", "fail", "normalize", "bogus"]),
                                       json_values, max_size=3)
job_bodies = st.fixed_dictionaries({}, optional={
    "inputs": inputs, "params": params, "priority": json_values | st.integers(-3, 12),
    "deadline_s": json_values, "timeout_s": json_values, "surprise": json_values})
embedding_bodies = st.fixed_dictionaries({}, optional={
    "input": inputs, "model": st.sampled_from(["minilm", "debug", "nope", ""]) | json_values,
    "encoding_format": st.sampled_from(["float", "base64", "int8"]) | json_values,
    "dimensions": json_values, "user": json_values})
model_names = st.sampled_from(["debug", "minilm", "tiny-clf", "nope"]) | st.text(string.printable, max_size=12)


def encode(body) -> bytes:
    return json.dumps(body, allow_nan=True).encode()         # ASCII escapes: lone surrogates travel


@st.composite
def requests(draw):
    kind = draw(st.sampled_from(["embeddings", "infer", "jobs", "job", "other"]))
    model = quote(draw(model_names), safe="") or "x"
    if kind == "embeddings":
        method, path, body = "POST", "/v1/embeddings", draw(embedding_bodies)
    elif kind in ("infer", "jobs"):
        method, path, body = "POST", f"/v1/models/{model}/{kind}", draw(job_bodies)
    elif kind == "job":
        method, path, body = "GET", f"/v1/jobs/{model}", None
    else:
        method = draw(st.sampled_from(["PUT", "DELETE", "PATCH", "GET"]))
        path, body = draw(st.sampled_from(["/v1/embeddings", "/v1/models/debug/infer", "/v2/x", "/"])), None
    content = b"" if body is None else encode(body)
    mangle = draw(st.sampled_from(["none"] * 6 + ["truncate", "bytes", "deep", "wrap"]))
    if mangle == "truncate" and content:
        content = content[: draw(st.integers(0, len(content) - 1))]
    elif mangle == "bytes":
        content = draw(st.binary(max_size=300))
    elif mangle == "deep":
        depth = draw(st.integers(1000, 60_000))
        content = b"[" * depth + b"]" * depth
    elif mangle == "wrap":
        content = encode([body])
    headers = {"Content-Type": draw(st.sampled_from(
        ["application/json"] * 6 + ["text/plain", "application/json; charset=latin-1", "multipart/form-data",
                                    "application/x-www-form-urlencoded", "application/vnd.api+json", ""]))}
    auth = draw(st.sampled_from(["ok"] * 8 + ["none", "wrong", "basic", "garbage"]))
    headers["Authorization"] = {"ok": f"Bearer {TOKEN}", "none": "", "wrong": "Bearer " + "z" * 40,
                                "basic": f"Basic {TOKEN}", "garbage": "Bearer \u00e9\u00e9".encode("latin-1")}[auth]
    return method, path, {k: v for k, v in headers.items() if v}, content


raw_lines = st.binary(min_size=0, max_size=60).filter(lambda b: b"\r\n" not in b)


@st.composite
def raw_requests(draw):
    """Complete but malformed HTTP/1.1 requests, built byte by byte."""
    start = draw(st.sampled_from([b"POST /v1/embeddings HTTP/1.1", b"POST /v1/models/debug/infer HTTP/1.1",
                                  b"GET /v1/models HTTP/1.1"]) | raw_lines)
    headers = [b"Host: x", b"Authorization: Bearer " + TOKEN.encode()]
    headers += draw(st.lists(raw_lines | st.sampled_from([
        b"Content-Length: abc", b"Content-Length: -5", b"Content-Length: 2", b"Content-Length: 99999999999",
        b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip", b"Content-Type: application/json",
        b"Expect: 100-continue", b"Content-Length: 2\r\nContent-Length: 3"]), max_size=4))
    body = draw(st.sampled_from([b"", b"{}", b"zz\r\nabc\r\n", b"0\r\n\r\n"]) | st.binary(max_size=40))
    return start + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body


def raw_status(port: int, data: bytes) -> int | None:
    """The final status of the answer to a raw request (an interim ``100 Continue`` is
    skipped); None if the server waits for more."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(data)
        got = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return None              # e.g. a declared body never sent: the server waits
            if not chunk:
                return None if not got else -1
            got += chunk
            while got.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in got:
                got = got.split(b"\r\n\r\n", 1)[1]        # interim response: read on
            if b"\r\n" in got:
                return int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.1 ") else -1


@pytest.fixture
def gateway(redis_url, models_env, tmp_path):
    gw = GatewayProcess(redis_url, tmp_path, env={"ELASTIQ_GATEWAY_MAX_BODY_BYTES": "100000",
                                                  "ELASTIQ_GATEWAY_SYNC_TIMEOUT_S": "0.3"}).start()
    yield gw
    gw.stop()


def test_fuzzed_requests_get_4xx_and_queue_nothing(gateway, redis):
    seen = {"requests": 0, "accepted": 0, "statuses": {}}
    http = httpx.Client(base_url=gateway.url, timeout=30)
    # control: an accepted job does show in the counts this test compares
    r = http.post("/v1/models/debug/jobs", headers=gateway.headers, json={"inputs": ["control"]})
    assert r.status_code == 202 and queued_jobs(redis) == (1, 1)
    before = [queued_jobs(redis)]

    @settings(max_examples=HTTP_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(requests())
    def one(request):
        method, path, headers, content = request
        r = http.request(method, path, headers=headers, content=content)
        seen["requests"] += 1
        seen["statuses"][r.status_code] = seen["statuses"].get(r.status_code, 0) + 1
        after = queued_jobs(redis)
        if 400 <= r.status_code < 500:
            assert after == before[0], (r.status_code, r.text, request)     # refused: nothing queued
            assert r.headers["content-type"].startswith("application/json"), r.headers
            assert "error" in r.json()
        else:
            assert r.status_code in (202, 504), (r.status_code, r.text, request)
            assert after[0] > before[0][0] and after[1] > before[0][1], (r.status_code, request)
            seen["accepted"] += 1
        before[0] = after

    one()
    http.close()
    assert seen["requests"] >= HTTP_EXAMPLES * 0.9, seen
    assert gateway.alive() and httpx.get(gateway.url + "/healthz").status_code == 200
    print("fuzz statuses:", seen)


def test_fuzzed_raw_http_gets_4xx(gateway, redis):
    seen = {"requests": 0, "answered": 0, "statuses": {}}
    before = [queued_jobs(redis)]

    @settings(max_examples=RAW_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(raw_requests())
    @example(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
             + b"\r\nExpect: 100-continue\r\n\r\n")          # interim 100, then a 400
    def one(data):
        status = raw_status(gateway.port, data)
        seen["requests"] += 1
        seen["statuses"][status] = seen["statuses"].get(status, 0) + 1
        after = queued_jobs(redis)
        if status is not None:
            seen["answered"] += 1
            assert 200 <= status < 500 or status == 504, (status, data[:200])
        if status is None or 400 <= status < 500:
            assert after == before[0], (status, data[:200])           # refused: nothing queued
        before[0] = after

    one()
    assert seen["answered"] >= RAW_EXAMPLES * 0.5, seen
    assert gateway.alive() and httpx.get(gateway.url + "/healthz").status_code == 200
    print("raw fuzz statuses:", seen)
