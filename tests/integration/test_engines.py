"""The onnx engine against the torch engine, with real models, real exports, real workers.

Parity (embed: MiniLM, classify: a tiny random BERT), int8 agreement on held-out texts,
a corrupt or truncated cache entry re-exported and never served, two workers starting at
once exporting once, a model that cannot export (FNet: its FFT has no ONNX symbolic)
served by torch with the reason logged, and a worker with a cached graph that imports
neither torch nor transformers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from elastiq.local import procs
from elastiq.registry import DEFAULT_MODELS, ModelSpec
from workers import runtime as rt
from workers.engines import cache, store, texts
from workers.engines.export import int8_problem
from workers.engines.int8 import RECIPE

pytestmark = pytest.mark.integration

MINILM = DEFAULT_MODELS["minilm"].source


def outputs(runtime, items, **params):
    """Run ``items`` the way a worker does (encode, forward, postprocess), 32 at a time."""
    out = []
    for i in range(0, len(items), 32):
        chunk = items[i:i + 32]
        out.extend(runtime.postprocess(runtime.forward(runtime.encode(chunk)), params))
    return out


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def minilm_torch():
    return rt.load(ModelSpec("minilm-torch", "embed", MINILM, {"engine": "torch", "max_seq_length": 256}))


def test_embed_parity_minilm(minilm_torch):
    onnx_rt = rt.load(ModelSpec("minilm", "embed", MINILM, {"max_seq_length": 256}))
    assert (onnx_rt.engine, minilm_torch.engine) == ("onnx", "torch")
    held = texts.heldout_texts()
    assert onnx_rt.encode(held) == minilm_torch.encode(held)          # same tokens, same truncation
    got, ref = outputs(onnx_rt, held), outputs(minilm_torch, held)
    assert len(got) == len(ref) == len(held) and all(len(v) == 384 for v in got)
    assert cosines(got, ref).min() >= 0.99999
    assert all(x == round(x, 7) for v in got[:5] for x in v)           # today's 7-decimal JSON
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    raw = outputs(onnx_rt, held[:4], normalize=False)                   # the pooled vector itself
    assert cosines(raw, outputs(minilm_torch, held[:4], normalize=False)).min() >= 0.99999
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-3)


def test_int8_agrees_with_torch_fp32_on_heldout_texts(minilm_torch):
    int8 = rt.load(ModelSpec("minilm-q8", "embed", MINILM, {"quantize": "int8", "max_seq_length": 256}))
    assert (int8.engine, int8.describe()["quantize"]) == ("onnx", "int8")
    held = texts.heldout_texts()
    cos = cosines(outputs(int8, held), outputs(minilm_torch, held))
    assert cos.mean() >= 0.99 and cos.min() >= 0.97, (cos.mean(), cos.min())
    assert cos.min() < 0.99999          # it really is a different (quantized) graph
    chosen = cache.ensure(int8.spec).manifest["figures"]["int8_nodes"]       # the graph served, as exported
    assert chosen["recipe"] == RECIPE and chosen["tried"][-1]["selection"] == chosen["selection"]
    probe = [{"cosine_mean": t["probe_cosine_mean"], "cosine_min": t["probe_cosine_min"]} for t in chosen["tried"]]
    assert all(int8_problem(f) for f in probe[:-1]) and int8_problem(probe[-1]) is None   # first set passing the probe
    assert [t["selection"] for t in chosen["tried"]] == ["all-weight-matmuls", "all-but-ffn-output",
                                                         "ffn-input+attention-output"][:len(probe)]


def test_classify_parity_tiny_classifier(tiny_classifier):
    onnx_rt = rt.load(ModelSpec("clf", "classify", str(tiny_classifier)))
    torch_rt = rt.load(ModelSpec("clf-t", "classify", str(tiny_classifier), {"engine": "torch"}))
    held = texts.heldout_texts()
    for params in ({}, {"top_k": 2}):
        got, ref = outputs(onnx_rt, held, **params), outputs(torch_rt, held, **params)
        assert [g["label"] for g in got] == [r["label"] for r in ref]
        for g, r in zip(got, ref):
            assert list(g["scores"]) == list(r["scores"])               # same labels, same order
            assert max(abs(g["scores"][k] - r["scores"][k]) for k in g["scores"]) <= 2e-6
    assert {g["label"] for g in got} <= {"negative", "positive", "neutral"}


# --- the cache: corrupt entries, concurrent first start, fallback


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "engines"
    monkeypatch.setenv("ELASTIQ_ENGINE_CACHE", str(root))
    return root


def _truncate(entry: Path) -> None:
    graph = entry / "model.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])


def _flip_a_byte(entry: Path) -> None:
    graph = entry / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))


def _drop_manifest(entry: Path) -> None:
    (entry / "manifest.json").unlink()


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, _drop_manifest])
def test_damaged_cache_entry_is_reexported_never_served(private_cache, tiny_classifier, damage):
    spec = ModelSpec("clf", "classify", str(tiny_classifier))
    first = cache.ensure(spec)
    assert first.build_s > 0 and cache.ensure(spec).build_s == 0      # the export is paid once
    created = first.manifest["created_at"]
    damage(first.dir)
    with pytest.raises(store.Invalid):
        store.load_entry(first.dir)
    again = cache.ensure(spec)
    assert again.dir == first.dir and again.manifest["created_at"] > created     # exported anew
    assert store.load_entry(again.dir).manifest["files"] == again.manifest["files"]
    runtime = rt.load(spec)
    assert runtime.engine == "onnx" and outputs(runtime, ["a fine film"])[0]["label"]


def test_two_workers_starting_at_once_export_once(private_cache, models_env, workers, client, redis):
    ids = workers.start("tiny-clf", n=2, slots=2)
    logs = [workers.log(w) for w in ids]
    assert sum(log.count("exporting to onnx") for log in logs) == 1, logs
    beats = procs.read_heartbeats(redis)
    assert [beats[w].engine("tiny-clf")["engine"] for w in ids] == ["onnx", "onnx"]
    entries = [p for p in private_cache.iterdir() if p.is_dir() and (p / "manifest.json").exists()]
    assert len(entries) == 1
    out = client.map("tiny-clf", [[f"review {i}"] for i in range(20)], progress=False, timeout=60)
    assert all(r.outputs[0]["label"] in {"negative", "positive", "neutral"} for r in out)
    # the exporter (and the other, while it waited on the lock) report that one-time cost apart
    # from their cold start; a worker started now finds the graph cached and pays nothing for it
    exporter = next(w for w, log in zip(ids, logs) if "exporting to onnx" in log)
    assert 0 < beats[exporter].engine_build_s <= beats[exporter].cold_start_s
    assert all(0 <= beats[w].engine_build_s <= beats[w].cold_start_s for w in ids), beats
    late = workers.start("tiny-clf", n=1, slots=2)[0]
    assert procs.read_heartbeats(redis)[late].engine_build_s == 0.0


def build_tiny_fnet(path: Path) -> Path:
    """A random 2-layer FNet (token mixing by FFT: ``aten::fft_fftn`` has no ONNX export)."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(DEFAULT_MODELS["minilm"].resolve_path()),
                                                     local_files_only=True)
    config = transformers.FNetConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    torch.manual_seed(0)
    transformers.FNetModel(config).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def test_model_that_cannot_export_is_served_by_torch(private_cache, tmp_path, monkeypatch, workers,
                                                     redis_url, redis):
    from producer import Client

    registry = tmp_path / "models.json"
    registry.write_text(json.dumps({"fnet": {"kind": "embed", "source": str(build_tiny_fnet(tmp_path / "fnet"))}}))
    monkeypatch.setenv("ELASTIQ_MODELS", str(registry))
    for run in range(2):
        (wid,) = workers.start("fnet", slots=2)
        engine = procs.read_heartbeats(redis)[wid].engine("fnet")
        assert engine["engine"] == "torch" and "fft" in engine["fallback_reason"], engine
        log = workers.log(wid)
        assert "serving with torch instead of onnx" in log and "fft" in log
        assert ("exporting to onnx" in log) == (run == 0)       # the failure is recorded once
        with Client(redis_url) as client:
            vec = client.submit("fnet", ["a text the fallback embeds"]).result(timeout=60).outputs[0]
        assert len(vec) == 32 and abs(np.linalg.norm(vec) - 1) < 1e-6
        workers.stop_all()


# --- serving needs no torch


def test_worker_with_cached_graph_imports_neither_torch_nor_transformers(workers, client, redis):
    cache.ensure(DEFAULT_MODELS["minilm"])          # warm: exports in a subprocess if needed
    (wid,) = workers.start("minilm", slots=2)
    assert len(client.submit("minilm", ["hello"]).result(timeout=60).outputs[0]) == 384
    beat = procs.read_heartbeats(redis)[wid]
    assert beat.engine("minilm")["engine"] == "onnx"
    assert "onnxruntime" in beat.heavy_modules
    assert not {"torch", "transformers"} & set(beat.heavy_modules), beat.heavy_modules
    maps = Path(f"/proc/{workers.pid(wid)}/maps").read_text()
    assert "onnxruntime" in maps and "libtorch" not in maps and "/torch/" not in maps


def test_worker_threads_never_exceed_cpus(workers, redis):
    budget = len(os.sched_getaffinity(0))
    (wid,) = workers.start("minilm", slots=2, threads=budget + 3)
    assert procs.read_heartbeats(redis)[wid].threads == budget
    assert f"using {budget}" in workers.log(wid)
