"""Train in the pool, publish to running workers under a steady stream of jobs, roll back,
refuse a corrupt artifact -- real redis-server, real worker processes, real training (a
tiny random encoder on a slice of the real dataset)."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from elastiq import contract, modelstore
from elastiq.errors import BadHyperParamsError, ModelVersionError, UnknownDatasetError, UnknownModelError
from elastiq.local.procs import read_heartbeats
from tests.conftest import ROOT

SMALL = {"epochs": 1, "max_train": 160, "max_eval": 80, "lr": 1e-3, "student_epochs": 1, "name": "rt"}


@pytest.fixture
def edge_env(monkeypatch, tmp_path, tiny_encoder):
    models = tmp_path / "models.json"
    models.write_text(json.dumps({"tiny-enc": {"kind": "embed", "source": str(tiny_encoder)},
                                  "rt": {"kind": "classify", "source": "store:rt"}}))
    monkeypatch.setenv("ELASTIQ_MODELS", str(models))
    monkeypatch.setenv("ELASTIQ_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("ELASTIQ_DATASET_CACHE", str(ROOT / ".elastiq" / "datasets"))
    monkeypatch.setenv("ELASTIQ_VERSION_POLL_S", "0.2")
    return tmp_path / "store"


def _client(redis_url):
    from producer import Client

    return Client(redis_url)


def test_bad_train_jobs_are_refused_before_anything_is_queued(redis_url, edge_env, redis):
    with _client(redis_url) as c:
        with pytest.raises(UnknownDatasetError):
            c.train(dataset="imdb", base="tiny-enc")
        with pytest.raises(UnknownModelError):
            c.train(dataset="rotten_tomatoes", base="gpt-17")
        with pytest.raises(BadHyperParamsError):
            c.train(dataset="rotten_tomatoes", base="tiny-enc", lr=-1.0)
    assert sum(redis.llen(k) for k in contract.queue_keys(contract.queue_for("train"))) == 0


def _stream(client, stop: threading.Event, jobs: list) -> None:
    i = 0
    while not stop.is_set():
        jobs.append(client.submit("rt", [f"review number {i}: a fine, moving film"]))
        i += 1
        time.sleep(0.02)


def _current_versions(redis) -> set:
    return {e["version"] for b in read_heartbeats(redis).values()
            for e in (b.engines or {}).values() if isinstance(e, dict) and e.get("version")}


def _wait(pred, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_train_publish_switch_rollback_and_refuse(redis_url, edge_env, workers, redis):
    from elastiq.local.stack_cli import collect_status
    from elastiq.registry import Registry

    workers.start("train", 1, slots=1, threads=1)
    with _client(redis_url) as c:
        job = c.train(dataset="rotten_tomatoes", base="tiny-enc", publish=True, seed=1, **SMALL)
        v1 = job.wait(timeout=240, progress=False)
        assert v1["published"] and v1["name"] == "rt" and 0 <= v1["metrics"]["val_accuracy"] <= 1
        assert job.progress()["phase"] == "done"
        ids = workers.start("rt", 2, slots=8, threads=1)
        assert _current_versions(redis) == {v1["version"]}
        beats = read_heartbeats(redis)
        assert "torch" in beats[[w for w in beats if w not in ids][0]].heavy_modules      # the trainer
        assert all("torch" not in beats[w].heavy_modules for w in ids)    # serving: onnxruntime only
        stop, jobs = threading.Event(), []
        feeder = threading.Thread(target=_stream, args=(c, stop, jobs))
        feeder.start()
        try:
            v2 = c.train(dataset="rotten_tomatoes", base="tiny-enc", publish=True, seed=2, **SMALL).wait(
                timeout=240, progress=True)             # the client's progress bar (tqdm, stderr)
            assert v2["version"] != v1["version"]
            assert _wait(lambda: _current_versions(redis) == {v2["version"]}), _current_versions(redis)
            status = collect_status(redis, Registry.from_env(), time.time())
            assert {w["versions"]["rt"]["version"] for w in status["workers"] if w["versions"]} == {v2["version"]}
            # a corrupt artifact: refused by publish, and by workers if forced in behind its back
            bad = _corrupt_copy(edge_env, v2["version"])
            with pytest.raises(ModelVersionError, match="sha256"):
                modelstore.Versions(redis, edge_env).publish("rt", bad)
            assert redis.get(contract.current_key("rt")) == v2["version"]
            redis.set(contract.current_key("rt"), bad)
            assert _wait(lambda: all(bad in (e.get("refused") or {}) for b in read_heartbeats(redis).values()
                                     for e in (b.engines or {}).values() if e.get("version")))
            assert _current_versions(redis) == {v2["version"]}          # still serving the good one
            late = workers.start("rt", 1, slots=8, threads=1)[0]         # starts while the bad one is current
            beat = read_heartbeats(redis)[late].engine("rt")
            assert beat["version"] == v1["version"] and bad in beat["refused"]   # the newest good one in history
            redis.set(contract.current_key("rt"), v2["version"])
            assert _wait(lambda: _current_versions(redis) == {v2["version"]})
            back = modelstore.Versions(redis, edge_env).rollback("rt")
            assert back["version"] == v1["version"]
            assert _wait(lambda: _current_versions(redis) == {v1["version"]})
            n = len(jobs)            # jobs submitted after the rollback landed, one of them answered
            assert _wait(lambda: len(jobs) > n + 5 and jobs[n + 5].status() == contract.DONE)
        finally:
            stop.set()
            feeder.join()
        results = [j.result(timeout=60) for j in jobs]
    assert len(results) > 50
    tags = [r.model_version for r in results]
    assert None not in tags and {v1["version"], v2["version"]} <= set(tags)
    assert bad not in tags
    assert all(r.outputs[0]["label"] in ("negative", "positive") for r in results)
    # in submission order the versions go v1 ... v2 ... v1 (a rollback), never the corrupt one
    assert tags[-1] == v1["version"]
    for wid in ids:
        assert "refused" in workers.log(wid)


def _corrupt_copy(store, version: str) -> str:
    name = "v1-corrupt"
    dst = store / "rt" / name
    shutil.copytree(store / "rt" / version, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    with open(dst / "cloud" / "model.onnx", "r+b") as f:
        f.seek(4000)
        f.write(b"\xff\xfe\xfd\xfc")
    return name
