"""The engine layer's pure parts: registry options, cache keys and verification, the export
orchestration around a stubbed exporter, the int8 node choice, the parity gates."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest

from elastiq.errors import ConfigError, ModelLoadError
from elastiq.registry import ModelSpec
from workers.engines import cache, max_seq_length, pad_batch, store, texts

# --- registry


def test_engine_defaults_to_onnx_and_is_validated():
    assert ModelSpec("m", "embed", "/x").engine == "onnx"
    assert ModelSpec("m", "classify", "/x", {"engine": "torch"}).engine == "torch"
    assert ModelSpec("d", "debug").engine == ""
    assert ModelSpec("m", "embed", "/x", {"quantize": "none"}).quantize is None
    assert ModelSpec("m", "embed", "/x", {"engine": "torch", "quantize": "int8-all"}).quantize == "int8-all"
    with pytest.raises(ConfigError, match="engine must be one of"):
        ModelSpec("m", "embed", "/x", {"engine": "tensorrt"})
    with pytest.raises(ConfigError, match="not available for engine 'onnx'"):
        ModelSpec("m", "embed", "/x", {"quantize": "bf16"})


# --- small pure helpers


def test_max_seq_length_and_padding():
    assert max_seq_length(256, 512, 512) == 256
    assert max_seq_length(None, 10**30, 512) == 512           # transformers' "no limit" sentinel
    assert max_seq_length(None, None, None) == 512
    ids, mask = pad_batch([[1, 2, 3], [4]], pad_id=9)
    assert ids.dtype == mask.dtype == np.int64
    assert ids.tolist() == [[1, 2, 3], [4, 9, 9]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_session_options_never_more_threads_than_given():
    from workers.engines.onnx_engine import session_options

    so = session_options(3)
    assert (so.intra_op_num_threads, so.inter_op_num_threads) == (3, 1)
    assert so.execution_mode.name == "ORT_SEQUENTIAL" and not so.enable_cpu_mem_arena
    assert session_options(0).intra_op_num_threads == 1


def test_probe_and_heldout_texts_are_disjoint():
    probe, held = set(texts._sentences("probe.txt")), set(texts._sentences("heldout.txt"))
    assert len(probe) >= 50 and len(held) >= 100 and not probe & held
    assert not any(t.startswith(("The parity probe", "Held-out")) for t in probe | held)   # headers
    assert len(texts.heldout_texts()) > len(held)                                          # + long texts


def test_parity_gates():
    from workers.engines.export import fp32_problem, int8_problem

    ok = {"cosine_min": 0.999999, "cosine_mean": 1.0, "token_mismatches": 0, "argmax_agree": 1.0}
    assert fp32_problem("classify", ok) is None
    assert "cosine min" in fp32_problem("embed", {**ok, "cosine_min": 0.9999})
    assert "argmax" in fp32_problem("classify", {**ok, "argmax_agree": 0.98})
    assert "tokenize differently" in fp32_problem("embed", {**ok, "token_mismatches": 2})
    assert int8_problem({"cosine_mean": 0.995, "cosine_min": 0.98}) is None
    assert "mean 0.985" in int8_problem({"cosine_mean": 0.985, "cosine_min": 0.98})
    assert int8_problem({"cosine_mean": 0.995, "cosine_min": 0.96}) is not None


# --- int8 node choice


def _graph(names_and_weights):
    import onnx
    from onnx import TensorProto, helper

    nodes, inits, prev = [], [], "x"
    for i, (name, const) in enumerate(names_and_weights):
        other = f"w{i}" if const else prev
        if const:
            inits.append(helper.make_tensor(other, TensorProto.FLOAT, [4, 4], [0.0] * 16))
        nodes.append(helper.make_node("MatMul", [prev, other], [f"y{i}"], name=name))
        prev = f"y{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 4])], inits)
    return onnx.helper.make_model(graph)


def test_int8_candidates_fastest_first():
    from workers.engines.int8 import candidates

    layer = "/model/encoder/layer.0/"
    bert = _graph([(layer + "attention/self/query/MatMul", True),
                   (layer + "attention/self/MatMul", False),                      # scores: activations
                   (layer + "attention/output/dense/MatMul", True),
                   (layer + "intermediate/dense/MatMul", True),
                   (layer + "output/dense/MatMul", True)])
    assert candidates(bert) == [
        ("all-weight-matmuls", [layer + "attention/self/query/MatMul", layer + "attention/output/dense/MatMul",
                                layer + "intermediate/dense/MatMul", layer + "output/dense/MatMul"]),
        ("all-but-ffn-output", [layer + "attention/self/query/MatMul", layer + "attention/output/dense/MatMul",
                                layer + "intermediate/dense/MatMul"]),
        ("ffn-input+attention-output", [layer + "attention/output/dense/MatMul", layer + "intermediate/dense/MatMul"])]
    other = _graph([("fc1", True), ("mix", False), ("fc2", True)])
    assert candidates(other) == [("all-weight-matmuls", ["fc1", "fc2"])]     # not BERT-named: one set


@pytest.mark.parametrize(("probe_mins", "chosen"), [
    ([0.98], "all-weight-matmuls"),                                   # the fastest passes: kept
    ([0.955, 0.975], "all-but-ffn-output"),                           # falls back one set
    ([0.95, 0.96, 0.965], "ffn-input+attention-output")])             # none passes: the last (then refused)
def test_int8_choice_keeps_the_first_set_passing_the_probe_gate(tmp_path, monkeypatch, probe_mins, chosen):
    """The selection loop itself (the real quantization and check on MiniLM: tests/integration)."""
    import onnx

    from workers.engines import export, int8

    fp32 = tmp_path / "model.fp32.onnx"
    onnx.save(_graph([("/m/layer.0/attention/output/dense/MatMul", True), ("/m/layer.0/intermediate/dense/MatMul", True),
                      ("/m/layer.0/output/dense/MatMul", True)]), str(fp32))
    quantized, figures = [], iter(probe_mins)
    monkeypatch.setattr(int8, "quantize", lambda src, dst, nodes: quantized.append(len(nodes)))
    monkeypatch.setattr(export, "check", lambda kind, ref, name, graph, out: (
        name == "probe" and graph == out / "model.onnx" or pytest.fail(f"checked {name} {graph}"))
        and {"cosine_mean": 0.995, "cosine_min": next(figures)})
    got = export.choose_int8("embed", {}, fp32, tmp_path)
    assert got["selection"] == chosen and got["recipe"] == int8.RECIPE
    assert [t["probe_cosine_min"] for t in got["tried"]] == probe_mins and quantized == [3, 2, 2][:len(probe_mins)]


def test_int8_entries_are_keyed_by_the_quantization_recipe(monkeypatch):
    from workers.engines import int8

    assert store.entry_name("ab" * 20, "embed", None).endswith("-onnx17-fp32-f1")
    now = store.entry_name("ab" * 20, "embed", "int8")
    assert now.endswith(f"-int8r{int8.RECIPE}-f1") and "int8" in store.index_key("s", "embed", "int8")
    before = store.index_key("s", "embed", "int8")
    monkeypatch.setattr(int8, "RECIPE", int8.RECIPE + 1)              # a new recipe: a new entry
    assert store.entry_name("ab" * 20, "embed", "int8") != now and store.index_key("s", "embed", "int8") != before
    assert store.entry_name("ab" * 20, "embed", None).endswith("-fp32-f1")    # fp32 entries untouched


# --- the cache on disk


def _model_dir(path: Path, weights: bytes = b"w" * 1000) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"model_type": "bert"}')
    (path / "model.safetensors").write_bytes(weights)
    (path / ".hidden").write_text("ignored")
    return path


def test_model_hash_is_content_based_and_memoised(tmp_path, monkeypatch):
    a, b = _model_dir(tmp_path / "a"), _model_dir(tmp_path / "b")
    memo = tmp_path / "memo"
    assert store.model_hash(a, memo) == store.model_hash(b, memo)          # same files, same key
    calls = []
    real = store.sha256_file
    monkeypatch.setattr(store, "sha256_file", lambda p: calls.append(p.name) or real(p))
    first = store.model_hash(a, memo)
    assert calls == []                                                      # the memo answered
    (a / "model.safetensors").write_bytes(b"v" * 1000)                      # same size, new mtime
    os.utime(a / "model.safetensors", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert store.model_hash(a, memo) != first and "model.safetensors" in calls
    (a / ".hidden").write_text("changed")
    assert store.model_hash(a, memo) == store.model_hash(a, None)


def _entry(root: Path) -> Path:
    entry = root / "e"
    entry.mkdir(parents=True)
    (entry / "model.onnx").write_bytes(bytes(range(256)) * 40)
    (entry / "tokenizer.json").write_text("{}")
    store.write_manifest(entry, {"kind": "embed"})
    return entry


@pytest.mark.parametrize("damage,message", [
    (lambda e: (e / "model.onnx").write_bytes((e / "model.onnx").read_bytes()[:-1]), "truncated"),
    (lambda e: (e / "model.onnx").write_bytes(b"\xff" + (e / "model.onnx").read_bytes()[1:]), "corrupt"),
    (lambda e: (e / "tokenizer.json").unlink(), "No such file"),
    (lambda e: (e / "manifest.json").write_text("{not json"), "no readable manifest"),
    (lambda e: (e / "manifest.json").write_text(json.dumps({"format": 0, "files": {}})), "format"),
])
def test_a_damaged_entry_is_invalid(tmp_path, damage, message):
    entry = _entry(tmp_path)
    assert store.load_entry(entry).manifest["kind"] == "embed"
    damage(entry)
    with pytest.raises(store.Invalid, match=message):
        store.load_entry(entry)


def _hold_lock(path: str, ready, release) -> None:
    with store.locked(Path(path)):
        ready.set()
        release.wait(10)


def test_the_entry_lock_excludes_other_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(str(tmp_path / "x.lock"), ready, release))
    child.start()
    try:
        assert ready.wait(30)
        fd = os.open(tmp_path / "x.lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        release.set()
        child.join(10)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)          # free once the holder is done
        os.close(fd)
    finally:
        release.set()
        child.join(10)


# --- ensure(): the orchestration, around a stub exporter (the real one: tests/integration)


class StubExporter:
    def __init__(self, status: str, reason: str = "", figures: dict | None = None):
        self.status, self.reason, self.figures, self.calls = status, reason, figures or {}, 0

    def __call__(self, model_dir, kind, quantize, out: Path) -> dict:
        self.calls += 1
        (out / "model.onnx").write_bytes(b"graph" * 100)
        (out / "tokenizer.json").write_text("{}")
        return {"status": self.status, "reason": self.reason, "figures": dict(self.figures),
                "meta": {"pad_id": 0}, "versions": {}, "exporter": "stub"}


@pytest.fixture
def spec(tmp_path):
    return ModelSpec("m", "embed", str(_model_dir(tmp_path / "model")))


def test_ensure_exports_once_then_serves_from_cache(tmp_path, spec, monkeypatch):
    stub = StubExporter("ok", figures={"fp32": {"cosine_min": 1.0}})
    monkeypatch.setattr(cache, "run_export", stub)
    first = cache.ensure(spec, root=tmp_path / "c")
    again = cache.ensure(spec, root=tmp_path / "c")
    assert stub.calls == 1 and again.dir == first.dir and again.manifest["figures"]["fp32"]["cosine_min"] == 1.0
    assert not list((tmp_path / "c").glob(".staging-*"))
    cache.ensure(spec, root=tmp_path / "c", force=True)
    assert stub.calls == 2


def test_parity_failure_is_refused_with_figures_and_remembered(tmp_path, spec, monkeypatch):
    stub = StubExporter("parity", "fp32 cosine min 0.998 < 0.99999 to torch", {"fp32": {"cosine_min": 0.998}})
    monkeypatch.setattr(cache, "run_export", stub)
    for _ in range(2):
        with pytest.raises(ModelLoadError, match=r"refused: fp32 cosine min 0\.998.*\"cosine_min\": 0\.998"):
            cache.ensure(spec, root=tmp_path / "c")
    assert stub.calls == 1                      # the second start read failed.json
    target = cache.locate(spec, tmp_path / "c")
    assert not (target.dir / "manifest.json").exists() and not (target.dir / "model.onnx").exists()


def test_export_error_falls_back_to_torch_and_is_remembered(tmp_path, spec, monkeypatch):
    stub = StubExporter("export_error", "UnsupportedOperatorError: aten::fft_fftn")
    monkeypatch.setattr(cache, "run_export", stub)
    first = cache.ensure(spec, root=tmp_path / "c")
    second = cache.ensure(spec, root=tmp_path / "c")
    assert isinstance(first, cache.Fallback) and "fft_fftn" in first.reason
    assert isinstance(second, cache.Fallback) and "recorded earlier" in second.reason and stub.calls == 1


def test_serve_only_entry_when_the_model_files_are_not_installed(tmp_path, spec, monkeypatch):
    monkeypatch.setattr(cache, "run_export", StubExporter("ok"))
    root = tmp_path / "c"
    exported = cache.ensure(spec, root=root)
    # the same source in an image that ships the graph but not the weights
    store.record_index(root, store.index_key("package:not_installed_pkg/model", "embed", None), exported.dir.name)
    gone = ModelSpec("m", "embed", "package:not_installed_pkg/model")
    assert cache.ensure(gone, root=root).dir == exported.dir
    (exported.dir / "model.onnx").write_bytes(b"broken")
    with pytest.raises(ModelLoadError, match="not installed to export it again"):
        cache.ensure(gone, root=root)
    with pytest.raises(ConfigError, match="not installed"):
        cache.ensure(ModelSpec("m2", "embed", "package:other_missing_pkg/model"), root=root)
