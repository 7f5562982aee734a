"""The core pipeline with real parts: redis-server, worker processes, MiniLM inference.

Every test runs twice: with the onnx engine (the default) and with ``engine: torch``
(the reference and fallback), through a registry file that sets the engine of every model.
"""

from __future__ import annotations

import collections
import json
import time

import numpy as np
import pytest

from elastiq import contract
from elastiq.errors import (
    BadParamsError,
    ElastiqError,
    EmptyInputError,
    InputTooLargeError,
    InputTypeError,
    JobFailedError,
    UnknownModelError,
)
from elastiq.jobrecord import read_record

pytestmark = pytest.mark.integration

SENTENCES = ["The cat sits on the mat.", "A dog is playing in the garden.",
             "Stock markets fell sharply today.", "How do I bake bread at home?"]


@pytest.fixture(params=["onnx", "torch"], autouse=True)
def engine(request, tmp_path, tiny_classifier, monkeypatch):
    """``minilm`` and ``tiny-clf`` on this engine (``debug`` has none)."""
    from elastiq.registry import DEFAULT_MODELS

    minilm = DEFAULT_MODELS["minilm"]
    registry = tmp_path / f"models-{request.param}.json"
    registry.write_text(json.dumps({
        "minilm": {"kind": "embed", "source": minilm.source,
                   "options": {**minilm.options, "engine": request.param}},
        "tiny-clf": {"kind": "classify", "source": str(tiny_classifier), "options": {"engine": request.param}},
        "debug": {"kind": "debug"},
    }))
    monkeypatch.setenv("ELASTIQ_MODELS", str(registry))
    return request.param


@pytest.fixture
def models_env(engine):
    return engine


def reference_embeddings(texts):
    from sentence_transformers import SentenceTransformer

    from elastiq.registry import DEFAULT_MODELS

    model = SentenceTransformer(str(DEFAULT_MODELS["minilm"].resolve_path()), device="cpu")
    return model.encode(texts, normalize_embeddings=True)


def test_embedding_matches_sentence_transformers(workers, client, redis, engine):
    (wid,) = workers.start("minilm")
    assert contract_engine(redis, wid, "minilm") == engine
    result = client.submit("minilm", SENTENCES).result(timeout=60)
    got = np.array(result.outputs, dtype=np.float64)
    ref = reference_embeddings(SENTENCES).astype(np.float64)
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert got.shape == (4, 384)
    assert cos.min() >= 0.9999, cos
    t = result.timings
    assert t["batch_size"] >= 1 and t["inference_ms"] > 0 and t["queue_wait_ms"] >= 0
    assert t["worker"].startswith("test-")


def test_500_jobs_two_workers_none_lost_none_duplicated(workers, client, redis):
    ids = workers.start("minilm", n=2, slots=8)
    texts = [f"sentence number {i} about a topic" for i in range(500)]
    results = client.map("minilm", texts, progress=False, timeout=240)
    assert len(results) == 500
    assert len({r.job_id for r in results}) == 500
    by_worker = collections.Counter(r.timings["worker"] for r in results)
    assert set(by_worker) == set(ids), by_worker     # fair dispatch: both took work
    # exactly one delivery each: our own record counts executions
    deliveries = [read_record(redis, r.job_id).deliveries for r in results]
    assert deliveries == [1] * 500
    # results in order: each embedding is the one of its own text
    again = client.submit("minilm", [texts[123]]).result(timeout=30).outputs[0]
    assert np.dot(again, results[123].outputs[0]) > 0.9999


def contract_engine(redis, wid: str, model: str) -> str:
    """The engine the worker's heartbeat says it runs ``model`` on."""
    return json.loads(redis.get(contract.heartbeat_key(wid)))["engines"][model]["engine"]


def test_classify_tiny_model(models_env, workers, client, redis, engine):
    (wid,) = workers.start("tiny-clf")
    assert contract_engine(redis, wid, "tiny-clf") == engine
    out = client.submit("tiny-clf", ["good", "bad film"], top_k=2).result(timeout=60).outputs
    assert len(out) == 2
    for item in out:
        assert item["label"] in {"negative", "positive", "neutral"}
        assert len(item["scores"]) == 2
        assert item["label"] == max(item["scores"], key=item["scores"].get)
        assert 0 <= sum(item["scores"].values()) <= 1.0001


@pytest.mark.parametrize("model,inputs,params,error", [
    ("nope", ["x"], {}, UnknownModelError),
    ("minilm", [], {}, EmptyInputError),
    ("minilm", "a string", {}, InputTypeError),
    ("minilm", ["ok", 3], {}, InputTypeError),
    ("minilm", ["   "], {}, EmptyInputError),
    ("minilm", ["x" * 9000], {}, InputTooLargeError),
    ("minilm", ["x"] * 300, {}, InputTooLargeError),
    ("minilm", ["x"], {"bogus": 1}, BadParamsError),
    ("minilm", ["\ud800"], {}, InputTypeError),
])
def test_bad_input_is_refused_before_queueing(client, redis, model, inputs, params, error):
    with pytest.raises(error) as info:
        client.submit(model, inputs, **params)
    assert isinstance(info.value, ElastiqError) and str(info.value)
    assert sum(redis.llen(k) for k in contract.queue_keys("elastiq.minilm")) == 0
    assert not list(redis.scan_iter(match=contract.JOB_PREFIX + "*"))


def test_worker_error_is_typed_and_next_job_succeeds(models_env, workers, client):
    workers.start("debug", slots=2)
    bad = client.submit("debug", ["hello"], fail="model said no")
    started = time.monotonic()
    with pytest.raises(JobFailedError, match="model said no"):
        bad.result(timeout=10)
    assert time.monotonic() - started < 1.0
    assert bad.status() == contract.FAILED
    crash = client.submit("debug", ["!raise"])
    with pytest.raises(JobFailedError, match="RuntimeError: debug model asked to raise"):
        crash.result(timeout=10)
    ok = client.submit("debug", ["fine"]).result(timeout=10)
    assert ok.outputs == [4]


def test_plain_celery_clients_can_submit_and_read_results(models_env, workers, client, redis_url):
    """Celery compatibility where users meet it: a plain Celery app's ``send_task`` is run
    (no wake-up is published: the worker's idle poll finds it), ``AsyncResult.get`` reads
    the answer, and a client that skips validation meets the same rules at the worker."""
    from elastiq.celeryconf import make_celery
    from elastiq.settings import Settings

    workers.start("debug", slots=2)
    app = make_celery(Settings(redis_url=redis_url), name="plain-celery-client")
    good = app.send_task(contract.TASK_NAME, kwargs={"model": "debug", "inputs": ["four"], "params": {}},
                         queue="elastiq.debug")
    assert good.get(timeout=10)["outputs"] == [4]
    bad = app.send_task(contract.TASK_NAME, kwargs={"model": "debug", "inputs": [1, 2]},
                        queue="elastiq.debug")
    with pytest.raises(Exception) as info:
        bad.get(timeout=10)
    assert type(info.value).__name__ == "InputTypeError"
    assert client.submit("debug", ["next"]).result(timeout=10).outputs == [4]
    app.close()


def test_status_and_deadline(models_env, workers, client):
    job = client.submit("debug", ["queued"])
    assert job.status() == contract.QUEUED           # no worker yet: our record says queued
    assert client.job("no-such-id").status() == contract.UNKNOWN
    expired = client.submit("debug", ["late"], deadline_s=0.01)
    time.sleep(0.05)                                 # a duration: past its 10 ms deadline before any worker runs
    workers.start("debug", slots=2)
    assert job.result(timeout=20).outputs == [6]
    assert job.status() == contract.DONE
    from elastiq.errors import JobExpiredError

    with pytest.raises(JobExpiredError):
        expired.result(timeout=20)


def test_a_worker_started_before_redis_waits_for_it_then_serves(models_env, tmp_path, monkeypatch):
    """Start order must not matter (compose, the local stack): a worker whose broker is not
    up yet keeps trying, takes nothing, and serves once Redis listens; SIGTERM while it
    waits ends it cleanly."""
    import signal

    from elastiq.local import procs
    from producer import Client
    from tests.conftest import WorkerPool, wait_until

    port = procs.free_port()
    url = f"redis://127.0.0.1:{port}/0"
    pool = WorkerPool(url, tmp_path)
    (wid,) = pool.start("debug", slots=2, wait=False)
    (waiting,) = pool.start("debug", slots=2, wait=False)
    for w in (wid, waiting):          # both up and refused by the absent broker at least once
        wait_until(lambda w=w: "cannot reach Redis" in pool.log(w) or pool.procs[w].poll() is not None, 60,
                   f"{w} trying the broker", interval_s=0.1)
    assert pool.procs[wid].poll() is None and "cannot reach Redis" in pool.log(wid)
    pool.signal(waiting, signal.SIGTERM)
    assert pool.procs[waiting].wait(15) == 0
    server = procs.RedisProcess(port, tmp_path / "redis").start()
    try:
        pool.wait_ready([wid], timeout_s=30)
        with Client(url) as client:
            assert client.submit("debug", ["late start"]).result(timeout=20).outputs == [10]
    finally:
        pool.stop_all()
        server.stop()


def test_caller_chosen_job_ids(models_env, workers, client, redis):
    from elastiq.errors import InputTypeError

    workers.start("debug", slots=2)
    jobs = client.submit_many("debug", [["a"], ["bb"]], job_ids=["mine-1", "mine-2"])
    assert [j.id for j in jobs] == ["mine-1", "mine-2"]
    assert [j.result(timeout=10).outputs for j in jobs] == [[1], [2]]
    for bad in (["x"], ["same", "same"], ["has space", "ok"], ["", "ok"], ["y" * 65, "ok"]):
        with pytest.raises(InputTypeError):
            client.submit_many("debug", [["a"], ["b"]], job_ids=bad)
    assert redis.llen("elastiq.debug") == 0                     # nothing queued by a refusal
