"""``python -m workers.engines.export``: export one model to onnx and check it (a subprocess).

Run by :func:`workers.engines.cache.run_export` in a fresh interpreter, never in a worker:

1. The torch reference first: the torch engine (fp32, the model as served) runs the
   probe and held-out texts. Measured here: after ``torch.onnx.export`` the *same
   in-process* torch model gave different embeddings call to call (cosine 0.89), so
   nothing torch computes after the export is trusted, and the serving process never
   exports.
2. ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``) of the model
   wrapped in its head (:class:`~workers.engines.torch_engine.EmbedHead` /
   ``ClassifyHead``: the same pooling/softmax code the torch engine runs), opset 17,
   dynamic batch and sequence axes, eager attention (a plainer graph than SDPA's).
   Why this exporter: the dynamo exporter needs ``onnxscript`` (not installed here, a
   new dependency with its own release cadence) and its output for transformers 5 is
   still moving; optimum's exporters do not support transformers 5. The TorchScript
   exporter handles BERT-style encoders, takes ~3 s for MiniLM, and the parity check
   below catches what tracing could get wrong (shape-dependent branches baked in).
3. int8 (``--quantize int8``): :mod:`workers.engines.int8` on the fp32 graph, the node
   set chosen on the probe texts (:func:`choose_int8`).
4. Parity, with ``tokenizers`` + onnxruntime exactly as a torch-free worker runs them,
   on batches of mixed lengths (padding) and single texts: fp32 cosine >= 0.99999 to
   torch on every probe text (classify: identical argmax too), int8 cosine mean >= 0.99
   and min >= 0.97 on the held-out texts, and identical token ids.

Not used: ``onnxruntime.transformers.optimizer`` (fused Attention, SkipLayerNormalization,
BiasGelu, EmbedLayerNormalization). Measured on MiniLM (Xeon AVX-512/AMX, one thread,
batch 32): the fused fp32 graph ran at 0.87-0.95x the plain graph (whose own session-level
fusions ORT applies at load), its fused ``Attention`` kernel alone took 31 % of the time;
quantized after fusing (QAttention) it was no faster than the plain graph quantized.

Writes ``model.onnx``, ``tokenizer.json`` and ``result.json`` (status ``ok`` | ``parity``
| ``export_error``, reason, figures, meta, versions) into ``--out``; exit 0 only if ok.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

FP32_MIN_COSINE = 0.99999
INT8_MEAN_COSINE = 0.99
INT8_MIN_COSINE = 0.97
BATCH = 16


def batches(n: int) -> list[list[int]]:
    """Index batches: BATCH-sized runs in order (mixed lengths, padded), then 4 alone."""
    runs = [list(range(i, min(n, i + BATCH))) for i in range(0, n, BATCH)]
    return runs + [[i] for i in range(min(4, n))]


def run_all(tokenize, run, texts: list[str], pad_id: int) -> tuple[list, np.ndarray]:
    """Token ids per text, and the outputs of every batch concatenated (one row per run)."""
    from workers.engines import pad_batch

    ids = tokenize(texts)
    rows = [run(*pad_batch([ids[i] for i in b], pad_id)) for b in batches(len(texts))]
    return ids, np.concatenate(rows).astype(np.float64)


def compare(kind: str, ref: np.ndarray, got: np.ndarray) -> dict:
    cos = (ref * got).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1), 1e-30)
    out = {"rows": len(cos), "cosine_min": round(float(cos.min()), 7),
           "cosine_mean": round(float(cos.mean()), 7),
           "max_abs_diff": float(np.abs(ref - got).max())}
    if kind == "classify":
        out["argmax_agree"] = round(float((ref.argmax(1) == got.argmax(1)).mean()), 5)
    return out


def export_fp32(model_dir: Path, kind: str, path: Path, opset: int, sample_ids: list) -> None:
    import torch

    from workers.engines import pad_batch
    from workers.engines.torch_engine import HEADS, load_hf

    try:
        _, model = load_hf(model_dir, kind, attn_implementation="eager")
    except Exception:  # noqa: BLE001 - a model without an eager path exports as it is
        _, model = load_hf(model_dir, kind)
    head = HEADS[kind](model).eval()
    ids, mask = pad_batch(sample_ids, 0)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "output": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(head, (torch.from_numpy(ids), torch.from_numpy(mask)), str(path),
                          dynamo=False, opset_version=opset, input_names=["input_ids", "attention_mask"],
                          output_names=["output"], dynamic_axes=axes, do_constant_folding=True)


def onnx_runner(graph: Path, tokenizer_json: Path, max_len: int):
    import onnxruntime as ort

    from workers.engines.onnx_engine import light_tokenizer, session_options

    session = ort.InferenceSession(str(graph), session_options(1), providers=["CPUExecutionProvider"])
    tok = light_tokenizer(tokenizer_json, max_len)
    return (lambda texts: [e.ids for e in tok.encode_batch(texts)],
            lambda ids, mask: session.run(None, {"input_ids": ids, "attention_mask": mask})[0])


def reference(model_dir: Path, kind: str, quantize: str | None, out: Path, threads: int) -> dict:
    """Step 1, before anything is exported: the torch engine's outputs, tokens and meta."""
    from elastiq.registry import ModelSpec
    from workers.engines import texts
    from workers.engines.torch_engine import TorchBackend

    torch_ref = TorchBackend(ModelSpec("export", kind, str(model_dir), {"engine": "torch"}), threads)
    tok = getattr(torch_ref.tokenizer, "backend_tokenizer", None)
    if tok is None:
        return {"error": "the model has no fast tokenizer (tokenizer.json) for a torch-free worker"}
    tok.save(str(out / "tokenizer.json"))
    sets = {"probe": texts.probe_texts(), **({"heldout": texts.heldout_texts()} if quantize else {})}
    ref = {"texts": sets, "max_len": torch_ref.max_seq_length, "pad_id": torch_ref.pad_id}
    for name, items in sets.items():
        ref[name] = run_all(torch_ref.tokenize, torch_ref.run, items, torch_ref.pad_id)
    config = torch_ref.model.model.config
    ref["meta"] = {"pad_id": torch_ref.pad_id, "model_max_length": _int(torch_ref.tokenizer.model_max_length),
                   "max_position_embeddings": getattr(config, "max_position_embeddings", None),
                   "id2label": {str(k): v for k, v in torch_ref.labels.items()} if kind == "classify" else {},
                   "output_dim": int(ref["probe"][1].shape[1])}
    return ref


def _int(value) -> int | None:
    return int(value) if value is not None and value < 2**62 else None


def check(kind: str, ref: dict, set_name: str, graph: Path, out: Path) -> dict:
    """Run ``graph`` on a text set as a torch-free worker would; figures against torch."""
    tokenize, run = onnx_runner(graph, out / "tokenizer.json", ref["max_len"])
    ref_ids, ref_out = ref[set_name]
    ids, got = run_all(tokenize, run, ref["texts"][set_name], ref["pad_id"])
    figures = compare(kind, ref_out, got)
    figures["token_mismatches"] = sum(a != b for a, b in zip(ids, ref_ids))
    return figures


def fp32_problem(kind: str, f: dict) -> str | None:
    if f["token_mismatches"]:
        return f"{f['token_mismatches']} probe texts tokenize differently with tokenizer.json"
    if f["cosine_min"] < FP32_MIN_COSINE:
        return f"fp32 cosine min {f['cosine_min']} < {FP32_MIN_COSINE} to torch"
    if kind == "classify" and f["argmax_agree"] < 1:
        return f"fp32 argmax differs from torch on {1 - f['argmax_agree']:.1%} of probe texts"
    return None


def int8_problem(f: dict) -> str | None:
    if f["cosine_mean"] < INT8_MEAN_COSINE or f["cosine_min"] < INT8_MIN_COSINE:
        return (f"int8 held-out cosine mean {f['cosine_mean']} (want >= {INT8_MEAN_COSINE}), "
                f"min {f['cosine_min']} (want >= {INT8_MIN_COSINE})")
    return None


def export_and_check(model_dir: Path, kind: str, quantize: str | None, opset: int, out: Path,
                     threads: int = 1) -> dict:
    ref = reference(model_dir, kind, quantize, out, threads)      # before any export
    if "error" in ref:
        return {"status": "export_error", "reason": ref["error"], "figures": {}}
    result = {"status": "ok", "reason": "", "figures": {}, "meta": ref["meta"], "versions": versions(),
              "exporter": f"torch.onnx.export (TorchScript, dynamo=False), opset {opset}"}
    fp32 = out / ("model.fp32.onnx" if quantize else "model.onnx")
    try:
        export_fp32(model_dir, kind, fp32, opset, ref["probe"][0][:2])
        result["figures"]["fp32"] = check(kind, ref, "probe", fp32, out)
    except Exception as exc:  # noqa: BLE001 - the exporter or onnxruntime refused this model
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:400] if str(exc).strip() else ''}"
        return {**result, "status": "export_error", "reason": reason}
    problem = fp32_problem(kind, result["figures"]["fp32"])
    if problem is None and quantize:
        result["figures"]["int8_nodes"] = choose_int8(kind, ref, fp32, out)
        result["figures"]["int8"] = check(kind, ref, "heldout", out / "model.onnx", out)
        problem = int8_problem(result["figures"]["int8"])
    return {**result, "status": "parity", "reason": problem} if problem else result


def choose_int8(kind: str, ref: dict, fp32: Path, out: Path) -> dict:
    """Quantize the candidate node sets fastest first (:func:`workers.engines.int8.
    candidates`); keep the first that passes the int8 gate on the *probe* texts (the last
    one tried if none does: the held-out gate then refuses it). ``out/model.onnx`` is it."""
    import onnx

    from workers.engines import int8

    tried = []
    for name, nodes in int8.candidates(onnx.load(str(fp32), load_external_data=False)):
        int8.quantize(fp32, out / "model.onnx", nodes)
        probe = check(kind, ref, "probe", out / "model.onnx", out)
        tried.append({"selection": name, "quantized_matmuls": len(nodes),
                      "probe_cosine_mean": probe["cosine_mean"], "probe_cosine_min": probe["cosine_min"]})
        if int8_problem(probe) is None:
            break
    return {**tried[-1], "recipe": int8.RECIPE, "tried": tried}


def versions() -> dict:
    import onnxruntime
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__, "python": sys.version.split()[0]}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m workers.engines.export", description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True, type=Path)
    p.add_argument("--kind", required=True, choices=("embed", "classify"))
    p.add_argument("--quantize", default="none", choices=("none", "int8"))
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--out", required=True, type=Path)
    return p.parse_args(argv)


def main(argv=None) -> int:
    import os

    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    quantize = None if args.quantize == "none" else args.quantize
    threads = len(os.sched_getaffinity(0))
    result = export_and_check(args.model_dir, args.kind, quantize, args.opset, args.out, threads)
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("status", "reason", "figures")}))
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
