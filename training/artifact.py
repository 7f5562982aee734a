"""Write a model version: cloud + edge parts, ONNX graphs, parity references, manifest.

Order matters (docs/edge.md, DESIGN.md "a trap measured here"): every torch reference is
computed *before* any ``torch.onnx.export`` in this process. Then the cloud graph (fp32)
is exported and checked against torch at once; the edge student is exported, quantized to
int8 (dynamic, per channel, every weight MatMul), and its own outputs are recorded as
the reference later loads must reproduce. The edge threshold is chosen on the validation
split from the int8 graph's confidence (what the edge client will run) and the cloud
model's correctness (elastiq/cascade.py). The directory is written under a staging name,
made read-only and renamed into place: a version appears complete or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch

from elastiq import cascade, modelstore
from elastiq.errors import ModelVersionError
from training import loop
from training import model as tm

OPSET = 17
PARITY_TEXTS = 48


def parity_texts(val_texts: list[str]) -> list[str]:
    extra = ["ok", "Not good at all, and far too long for what it has to say about anything.", "!"]
    return val_texts[:PARITY_TEXTS - len(extra)] + extra


def export(model, path: Path, sample_ids) -> None:
    wrapped = tm.Probabilities(model).eval()
    ids, mask = sample_ids
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "output": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (ids, mask), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["input_ids", "attention_mask"], output_names=["output"],
                          dynamic_axes=axes, do_constant_folding=True)


def quantize_all(src: Path, dst: Path) -> dict:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from workers.engines.int8 import weight_matmuls

    nodes = weight_matmuls(onnx.load(str(src), load_external_data=False))
    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                     extra_options={"MatMulConstBOnly": True})
    return {"quantized_matmuls": len(nodes)}


def _save_part(model, tok, out: Path, labels, max_len: int) -> None:
    tm.save(model, tok, out, labels, max_len)
    meta = json.loads((out / tm.HEAD_META).read_text())
    meta["pad_id"] = int(tok.pad_token_id or 0)
    (out / tm.HEAD_META).write_text(json.dumps(meta, indent=1))
    if not (out / "tokenizer.json").exists():
        raise ModelVersionError("the base model has no fast tokenizer (tokenizer.json): an edge client needs one")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parents[1], check=False)
        return out.stdout.strip() or None
    except OSError:
        return None


def build(root: Path, name: str, cloud, edge, tok, *, labels: list[str], max_len: int, val, cloud_val_probs,
          metrics: dict, lineage: dict, target_drop: float) -> dict:
    """Write the version; its manifest. ``edge`` may be None (no edge part)."""
    staging = root / name / f".staging-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        return _build(staging, root, name, cloud, edge, tok, labels=labels, max_len=max_len, val=val,
                      cloud_val_probs=cloud_val_probs, metrics=metrics, lineage=lineage, target_drop=target_drop)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build(staging, root, name, cloud, edge, tok, *, labels, max_len, val, cloud_val_probs, metrics,
           lineage, target_drop) -> dict:
    texts = parity_texts([e.text for e in val])
    parts = {"cloud": cloud, **({"edge": edge} if edge is not None else {})}
    refs = {p: loop.predict(m, tok, texts, max_len) for p, m in parts.items()}     # before any export
    sample = loop.encode(tok, texts[:2], max_len)
    for p, m in parts.items():
        _save_part(m, tok, staging / p, labels, max_len)
    export(cloud, staging / "cloud" / "model.onnx", sample)
    manifest = {"name": name, "created_at": time.time(), "labels": labels, "metrics": dict(metrics),
                "lineage": lineage, "parity": {"cloud": {"precision": "fp32", "texts": texts,
                                                         "probs": np.round(refs["cloud"], 7).tolist()}}}
    if edge is not None:
        manifest["edge"] = _edge(staging, edge, tok, texts, refs["edge"], val, cloud_val_probs, target_drop,
                                 manifest, sample)
    for p in parts:
        modelstore.parity(staging, manifest, p)          # as a worker / edge client will load it
    manifest["files"] = modelstore.file_table(staging)
    manifest["version"] = modelstore.version_id(manifest["files"], manifest["created_at"])
    (staging / modelstore.MANIFEST).write_text(json.dumps(manifest, indent=1))
    for p in staging.rglob("*"):
        if p.is_file():
            p.chmod(0o444)
    final = root / name / manifest["version"]
    os.rename(staging, final)
    return manifest


def _edge(staging, edge, tok, texts, torch_ref, val, cloud_val_probs, target_drop, manifest, sample) -> dict:
    fp32 = staging / "edge.fp32.onnx"
    export(edge, fp32, sample)
    figures = quantize_all(fp32, staging / "edge" / "model.onnx")
    fp32.unlink()
    graph = modelstore.OnnxClassifier(staging / "edge")
    got = graph.predict(texts)
    figures["int8_label_agreement_to_torch"] = round(float((got.argmax(1) == torch_ref.argmax(1)).mean()), 4)
    manifest["parity"]["edge"] = {"precision": "int8", "texts": texts, "probs": np.round(got, 7).tolist()}
    labels = np.asarray([e.label for e in val])
    edge_val = graph.predict([e.text for e in val], batch=1)        # as the edge client runs it
    chosen = cascade.choose_threshold(edge_val.max(1).tolist(), (edge_val.argmax(1) == labels).tolist(),
                                      (cloud_val_probs.argmax(1) == labels).tolist(), target_drop)
    manifest["metrics"]["edge_val_accuracy"] = round(chosen["edge_accuracy"], 5)
    return {"threshold": chosen["threshold"], "selection": chosen, "layers": edge.encoder.config.num_hidden_layers,
            "quantize": "int8", **figures}
