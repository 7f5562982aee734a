"""Real training on a small slice (a tiny random encoder), the version it writes, and the
checks that refuse a corrupt or wrong artifact. Torch, no services."""

from __future__ import annotations

import json
import shutil

import pytest

from elastiq import modelstore
from elastiq.errors import ModelVersionError
from elastiq.registry import DEFAULT_MODELS, ModelSpec, Registry
from elastiq.trainspec import parse
from tests.conftest import ROOT

DATA = ROOT / ".elastiq" / "datasets"


@pytest.fixture(scope="module")
def trained(tiny_encoder, tmp_path_factory):
    from training import run

    reg = Registry({**DEFAULT_MODELS, "tiny-enc": ModelSpec("tiny-enc", "embed", str(tiny_encoder))})
    store = tmp_path_factory.mktemp("store")
    seen = []
    spec = parse({"dataset": "rotten_tomatoes", "base": "tiny-enc", "epochs": 2, "max_train": 160,
                  "max_eval": 80, "lr": 1e-3, "student_epochs": 1, "name": "rt"}, reg)
    manifest = run.run(spec, reg, progress=seen.append, store=store, data_root=DATA)
    return store, manifest, seen


def test_training_reports_progress_and_writes_a_version(trained):
    store, manifest, seen = trained
    phases = [p["phase"] for p in seen]
    assert phases[0] == "load" and "train" in phases and "distil" in phases and phases[-1] == "export"
    evals = [p for p in seen if "val_accuracy" in p and p["phase"] == "train"]
    assert [p["epoch"] for p in evals] == [1, 2] and all(0 <= p["val_accuracy"] <= 1 for p in evals)
    assert all(p["step"] <= p["steps"] for p in seen if "step" in p)
    d = store / "rt" / manifest["version"]
    assert (d / "cloud" / "model.onnx").is_file() and (d / "edge" / "model.onnx").is_file()
    assert (d / "cloud" / "config.json").is_file() and (d / "cloud" / "head.safetensors").is_file()
    lin = manifest["lineage"]
    assert lin["base"] == "tiny-enc" and lin["dataset"] == "rotten_tomatoes"
    assert set(lin["splits"]) == {"train", "validation", "test"} and lin["hyper_parameters"]["epochs"] == 2
    assert manifest["edge"]["layers"] == 2 and manifest["edge"]["quantize"] == "int8"
    assert 0 < manifest["edge"]["threshold"] <= 1.01
    sel = manifest["edge"]["selection"]
    assert sel["cascade_accuracy"] >= sel["cloud_accuracy"] - 0.005 and "validation" in sel["target"]
    assert modelstore.check("rt", manifest["version"], store)["version"] == manifest["version"]


def test_a_version_is_read_only_on_disk(trained):
    store, manifest, _ = trained
    files = [p for p in (store / "rt" / manifest["version"]).rglob("*") if p.is_file()]
    assert files and all(not p.stat().st_mode & 0o222 for p in files)
    assert not list((store / "rt").glob(".staging-*"))                # nothing half-written left


def _copy(store, manifest, tmp_path, version="v1-corrupt"):
    dst = tmp_path / "rt" / version
    shutil.copytree(store / "rt" / manifest["version"], dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_a_corrupt_artifact_is_refused(trained, tmp_path):
    store, manifest, _ = trained
    dst = _copy(store, manifest, tmp_path)
    with open(dst / "cloud" / "model.onnx", "r+b") as f:
        f.seek(2000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelVersionError, match="sha256"):
        modelstore.check("rt", "v1-corrupt", tmp_path)


def test_a_graph_that_fails_parity_is_refused_even_with_matching_hashes(trained, tmp_path):
    store, manifest, _ = trained
    dst = _copy(store, manifest, tmp_path, "v1-wrong")
    shutil.copy(dst / "edge" / "model.onnx", dst / "cloud" / "model.onnx")   # another model's graph
    m = json.loads((dst / "manifest.json").read_text())
    m["files"] = modelstore.file_table(dst)                                   # hashes re-signed
    (dst / "manifest.json").write_text(json.dumps(m))
    modelstore.verify(dst)
    with pytest.raises(ModelVersionError, match="parity"):
        modelstore.check("rt", "v1-wrong", tmp_path)
