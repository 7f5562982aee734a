"""``elastiq bench quantize``: torch int8 (dynamic) and bf16 MiniLM vs torch fp32 — speed and agreement.

Speed: the in-process limit (``processes`` × 1 thread, the worker's batcher) of each
variant, the variants measured in alternating order over ``rounds`` rounds; speed-up =
variant ÷ fp32 of the same round (median, min, max). Agreement: cosine between each variant's
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
    """The check set's embeddings by variant ``name``, and the engine that computed them."""
    import numpy as np

    from elastiq.registry import Registry
    from workers import runtime as rt

    model = rt.load(Registry.from_env().get(name), 1)
    out = []
    for i in range(0, len(texts), 32):
        out.extend(model.forward(model.encode(texts[i:i + 32])))
    arr = np.stack(out).astype(np.float64)
    return arr / np.linalg.norm(arr, axis=1, keepdims=True), model.engine


def run(*, smoke: bool = False, processes: int = 2, seconds: float = 5.0, rounds: int = h.ROUNDS) -> dict:
    if smoke:
        seconds, processes = 1.0, 1
    check = h.corpus() + h.mixed_texts(40 if smoke else 200, seed=1)
    speed_texts = h.sentences(512)
    report: dict = {"benchmark": "quantize", "machine": h.machine(), "min_mean_cosine": MIN_MEAN_COSINE,
                    "check_texts": len(check), "processes": processes, "threads": 1, "batch": 32,
                    "rounds": rounds, "variants": {}}
    engines = []
    with h.stack():
        h.stage("in-process speed of each variant, alternating")
        speed = h.alternate({name: (lambda _, n=name: h.inprocess_limit(n, speed_texts, processes=processes,
                                                                         seconds=seconds)) for name in VARIANTS},
                            rounds)
        ref = None
        for name in VARIANTS:
            h.stage(f"{name}: check-set embeddings")
            emb, engine = _embed(name, check)
            engines += [engine] + [r["engine"] for r in speed[name]]
            ref = emb if ref is None else ref
            cos = (emb * ref).sum(1)
            report["variants"][name] = {**h.summarize(speed[name], ("texts_per_s",)),
                                        "cosine_mean": round(float(cos.mean()), 5),
                                        "cosine_min": round(float(cos.min()), 5)}
    for name, v in report["variants"].items():
        spread = h.ratio_spread(speed[name], speed[BASE], "texts_per_s")
        v["speedup"], v["speedup_spread"] = spread["median"], spread
        v["agrees"] = v["cosine_mean"] >= MIN_MEAN_COSINE
    report["engine"] = h.one_engine(engines)
    return report
