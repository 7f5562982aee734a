"""``elastiq bench quantize``: torch int8 (dynamic) and bf16 MiniLM vs torch fp32 — speed and agreement.

Speed: the in-process limit (``processes`` × 1 thread, batch 32) of each variant, measured
in the same run; ratio = variant ÷ fp32. Agreement: cosine between each variant's
embeddings and fp32's on a check set (the built-in corpus plus mixed-length texts);
the mean must stay ≥ 0.99 (the min is reported too). Variants are registry entries
on the torch engine with ``options.quantize`` (``minilm-int8``: the selected layers,
``minilm-int8-all``: every Linear layer, ``minilm-bf16``; see :mod:`benchmarks.harness`).
The onnx engine's fp32 and int8 graphs are compared in ``elastiq bench engine``.
"""

from __future__ import annotations

from benchmarks import harness as h

MIN_MEAN_COSINE = 0.99
BASE = "minilm-torch"
VARIANTS = (BASE, "minilm-int8", "minilm-int8-all", "minilm-bf16")


def _embed(name: str, texts: list[str]):
    import numpy as np

    from elastiq.registry import Registry
    from workers import runtime as rt

    model = rt.load(Registry.from_env().get(name))
    out = []
    for i in range(0, len(texts), 32):
        out.extend(model.forward(model.encode(texts[i:i + 32])))
    arr = np.stack(out).astype(np.float64)
    return arr / np.linalg.norm(arr, axis=1, keepdims=True)


def run(*, smoke: bool = False, processes: int = 2, seconds: float = 5.0) -> dict:
    if smoke:
        seconds, processes = 1.0, 1
    check = h.corpus() + h.mixed_texts(40 if smoke else 200, seed=1)
    speed_texts = h.sentences(512)
    report: dict = {"benchmark": "quantize", "machine": h.machine(), "min_mean_cosine": MIN_MEAN_COSINE,
                    "check_texts": len(check), "processes": processes, "threads": 1, "batch": 32,
                    "variants": {}}
    with h.stack():
        ref = None
        for name in VARIANTS:
            h.stage(f"{name}: in-process speed and check-set embeddings")
            speed = h.inprocess_limit(name, speed_texts, processes=processes, seconds=seconds)
            emb = _embed(name, check)
            if ref is None:
                ref = emb
            cos = (emb * ref).sum(1)
            report["variants"][name] = {"texts_per_s": speed["texts_per_s"],
                                        "cosine_mean": round(float(cos.mean()), 5),
                                        "cosine_min": round(float(cos.min()), 5)}
    base = report["variants"][BASE]["texts_per_s"]
    for name, v in report["variants"].items():
        v["speedup"] = round(v["texts_per_s"] / base, 3)
        v["agrees"] = v["cosine_mean"] >= MIN_MEAN_COSINE
    return report
