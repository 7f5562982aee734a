"""The HTTP gateway with real parts: uvicorn on a loopback port, redis-server, worker
processes running MiniLM, and the official ``openai`` SDK as the HTTP client."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.gateway_server import GatewayProcess, queued_jobs

pytestmark = pytest.mark.integration

SENTENCES = ["The cat sits on the mat.", "A dog is playing in the garden.",
             "Stock markets fell sharply today.", "How do I bake bread at home?"]


@pytest.fixture
def gateway(redis_url, models_env, tmp_path):
    gw = GatewayProcess(redis_url, tmp_path).start()
    yield gw
    gw.stop()


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def reference_token_count(texts) -> int:
    import transformers

    from elastiq.registry import DEFAULT_MODELS

    tok = transformers.AutoTokenizer.from_pretrained(str(DEFAULT_MODELS["minilm"].resolve_path()))
    return sum(len(ids) for ids in tok(list(texts), truncation=True, max_length=256)["input_ids"])


def test_openai_sdk_returns_the_clients_vectors(gateway, workers, client):
    from openai import OpenAI

    workers.start("minilm")
    expected = client.submit("minilm", SENTENCES).result(timeout=60).outputs
    sdk = OpenAI(base_url=gateway.url + "/v1", api_key=gateway.token, max_retries=0)
    as_list = sdk.embeddings.create(model="minilm", input=SENTENCES, encoding_format="float")
    as_b64 = sdk.embeddings.create(model="minilm", input=SENTENCES)      # the SDK's default: base64
    for response in (as_list, as_b64):
        assert [d.index for d in response.data] == [0, 1, 2, 3]
        got = [d.embedding for d in response.data]
        assert np.asarray(got).shape == (4, 384)
        assert cosines(got, expected).min() >= 0.9999
        assert response.model == "minilm"
        assert response.usage.prompt_tokens == reference_token_count(SENTENCES)
        assert response.usage.total_tokens == response.usage.prompt_tokens
    one = sdk.embeddings.create(model="minilm", input=SENTENCES[2], encoding_format="float")
    assert len(one.data) == 1 and cosines([one.data[0].embedding], [expected[2]])[0] >= 0.9999


def test_base64_is_little_endian_float32(gateway, workers):
    workers.start("minilm")
    r = httpx.post(gateway.url + "/v1/embeddings", headers=gateway.headers, timeout=60,
                   json={"model": "minilm", "input": SENTENCES[:2], "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    floats = httpx.post(gateway.url + "/v1/embeddings", headers=gateway.headers, timeout=60,
                        json={"model": "minilm", "input": SENTENCES[:2]}).json()
    for packed, plain in zip(r.json()["data"], floats["data"]):
        raw = base64.b64decode(packed["embedding"])
        assert len(raw) == 384 * 4
        vector = struct.unpack("<384f", raw)
        assert np.allclose(vector, plain["embedding"], atol=1e-7)


def test_fast_path_answers_as_the_route_does(gateway, workers):
    """``application/json`` takes gateway/fastpath.py; ``application/x+json`` (JSON to FastAPI,
    not to the fast path) takes the FastAPI route: same status, headers and body shape."""
    workers.start("minilm")
    answers = {}
    for ctype in ("application/json", "application/x+json"):
        for name, body in (("ok", {"model": "minilm", "input": SENTENCES[:2], "encoding_format": "float"}),
                           ("unknown", {"model": "nope", "input": "x"}),
                           ("dimensions", {"model": "minilm", "input": "x", "dimensions": 8})):
            r = httpx.post(gateway.url + "/v1/embeddings", headers={**gateway.headers, "Content-Type": ctype},
                           content=json.dumps(body), timeout=60)
            answers[ctype, name] = (r.status_code, r.headers["content-type"], r.json())
    for name in ("ok", "unknown", "dimensions"):
        fast, route = answers["application/json", name], answers["application/x+json", name]
        assert fast[:2] == route[:2] and fast[0] == {"ok": 200, "unknown": 404, "dimensions": 400}[name]
        if name != "ok":
            assert fast[2] == route[2]
    fast, route = answers["application/json", "ok"][2], answers["application/x+json", "ok"][2]
    assert fast["usage"] == route["usage"] and fast["model"] == route["model"] == "minilm"
    assert cosines([d["embedding"] for d in fast["data"]], [d["embedding"] for d in route["data"]]).min() >= 0.9999


def test_long_input_list_is_split_into_jobs_in_order(gateway, workers, client, redis):
    workers.start("minilm", slots=8)
    texts = [f"sentence number {i} about a topic" for i in range(600)]      # > 256 per job
    r = httpx.post(gateway.url + "/v1/embeddings", headers=gateway.headers, timeout=120,
                   json={"model": "minilm", "input": texts, "encoding_format": "float"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["index"] for d in data] == list(range(600))
    picks = [0, 255, 256, 511, 512, 599]
    expected = client.submit("minilm", [texts[i] for i in picks]).result(timeout=60).outputs
    assert cosines([data[i]["embedding"] for i in picks], expected).min() >= 0.9999
    _, records = queued_jobs(redis)
    assert records == 3 + 1          # 600 texts = 256 + 256 + 88, and the client's own job


def test_infer_any_kind_and_jobs_endpoint(gateway, workers, redis):
    h, url = gateway.headers, gateway.url
    r = httpx.post(f"{url}/v1/models/debug/jobs", headers=h, json={"inputs": ["queued first"]})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.headers["location"] == f"/v1/jobs/{job_id}" == r.json()["url"]
    view = httpx.get(url + r.headers["location"], headers=h).json()
    assert view["status"] == "queued" and view["result"] is None and view["model"] == "debug"
    workers.start("debug,tiny-clf", slots=4)
    r = httpx.post(f"{url}/v1/models/debug/infer", headers=h, json={"inputs": ["hello", "hi"]}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == [5, 2] and r.json()["timings"]["worker"].startswith("test-")
    r = httpx.post(f"{url}/v1/models/tiny-clf/infer", headers=h, timeout=60,
                   json={"inputs": ["good film"], "params": {"top_k": 2}})
    assert r.status_code == 200, r.text
    assert len(r.json()["outputs"][0]["scores"]) == 2
    for _ in range(100):
        view = httpx.get(f"{url}/v1/jobs/{job_id}", headers=h).json()
        if view["status"] == "done":
            break
        time.sleep(0.1)
    assert view["status"] == "done" and view["result"]["outputs"] == [12]
    assert view["result"]["timings"]["queue_wait_ms"] > 0 and view["submitted_at"] > 0


def test_models_health_metrics_and_no_torch(gateway, redis_url):
    h, url = gateway.headers, gateway.url
    models = httpx.get(url + "/v1/models", headers=h).json()
    assert {m["id"]: m["kind"] for m in models["data"]} == {"minilm": "embed", "tiny-clf": "classify",
                                                             "debug": "debug", "train": "train"}
    health = httpx.get(url + "/healthz")                       # no token needed
    assert health.status_code == 200 and health.json()["redis"] is True
    metrics = httpx.get(url + "/metrics", headers=h)
    assert metrics.status_code == 200
    assert 'elastiq_gateway_requests_total{method="GET",route="/v1/models",status="200"} 1.0' in metrics.text
    maps = Path(f"/proc/{gateway.proc.pid}/maps").read_text()
    assert "libtorch" not in maps and "/torch/" not in maps      # the serving process never loaded torch


def metric(gw, name: str) -> float:
    text = httpx.get(gw.url + "/metrics", headers=gw.headers).text
    return float(next((line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")), 0))


def test_concurrent_requests_are_coalesced_into_few_publishes(gateway, workers):
    workers.start("debug", slots=16)

    async def burst(n: int) -> list[int]:
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers, timeout=60,
                                     limits=httpx.Limits(max_connections=64)) as c:
            rs = await asyncio.gather(*(c.post("/v1/models/debug/infer", json={"inputs": [f"text {i}"]})
                                        for i in range(n)))
            return [r.status_code for r in rs], [r.json()["outputs"][0] for r in rs]

    statuses, outputs = asyncio.run(burst(64))
    assert statuses == [200] * 64
    assert outputs == [len(f"text {i}") for i in range(64)]          # each request got its own job
    calls = metric(gateway, "elastiq_gateway_submit_batch_jobs_count")
    jobs = metric(gateway, "elastiq_gateway_submit_batch_jobs_sum")
    print(f"64 requests -> {calls:.0f} submit_many calls")
    assert jobs == 64 and calls < 64 / 2, (calls, jobs)               # micro-batched publishes
    assert metric(gateway, 'elastiq_gateway_results_total{via="message"}') >= 32    # pub/sub does the work


@pytest.mark.slow
def test_results_arrive_again_after_a_redis_restart(models_env, tmp_path):
    """The one pub/sub connection reconnects and re-subscribes; meanwhile: 503, never a crash."""
    from elastiq.local import procs
    from tests.conftest import WorkerPool

    server = procs.RedisProcess(procs.free_port(), tmp_path / "redis").start()
    pool = WorkerPool(server.url, tmp_path)
    gw = GatewayProcess(server.url, tmp_path)
    try:
        pool.start("debug", slots=2)
        gw.start()
        infer = gw.url + "/v1/models/debug/infer"
        assert httpx.post(infer, headers=gw.headers, json={"inputs": ["before"]}, timeout=30).json()["outputs"] == [6]
        server.restart()
        statuses, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline:
            r = httpx.post(infer, headers=gw.headers, json={"inputs": ["after"], "timeout_s": 5}, timeout=30)
            statuses.append(r.status_code)
            if r.status_code == 200:
                break
            time.sleep(0.2)
        assert statuses[-1] == 200 and r.json()["outputs"] == [5], statuses
        assert set(statuses) <= {200, 503, 504}, statuses
        assert httpx.get(gw.url + "/healthz").json()["results_subscription"] is True
        # many at once, after the restart: the results arrive as pub/sub messages on the
        # re-made subscription (not only through the 1 s MGET fallback). Each job holds its
        # slot 0.3 s, so it is answered after the gateway's SUBSCRIBE for it has landed (a
        # job answered before is found by the MGET that follows the SUBSCRIBE instead).
        via_message = metric(gw, 'elastiq_gateway_results_total{via="message"}')

        async def burst():
            async with httpx.AsyncClient(base_url=gw.url, headers=gw.headers, timeout=30) as c:
                return await asyncio.gather(*(c.post("/v1/models/debug/infer",
                                                     json={"inputs": ["x" * i], "params": {"sleep_ms": 300}})
                                              for i in range(1, 33)))
        assert [r.json()["outputs"] for r in asyncio.run(burst())] == [[i] for i in range(1, 33)]
        assert metric(gw, 'elastiq_gateway_results_total{via="message"}') - via_message >= 16
        assert gw.alive()
    finally:
        gw.stop()
        pool.stop_all()
        server.stop()
