"""Model runtimes: load a model once per worker process and run a forward pass.

The model itself runs in an engine (:mod:`workers.engines`: onnx by default, torch as the
reference and fallback); a runtime adds what its kind means. A runtime has two steps, so
the micro-batcher can sort by length and count padding before it pads: ``encode(texts)
-> token id lists`` and ``forward(id_lists) -> outputs`` (one raw output per text).
``postprocess(outputs, params)`` turns raw outputs into the JSON a job returns.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

from elastiq.errors import JobFailedError
from elastiq.registry import ModelSpec

log = logging.getLogger(__name__)


class Runtime:
    kind = ""
    engine = "none"          # what runs the forward pass (reported by benchmarks and heartbeats)
    build_s = 0.0            # of the load, one-time engine building (export): see WorkerState.engine_build_s

    def __init__(self, spec: ModelSpec, threads: int = 1):
        self.spec = spec
        self.name = spec.name

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        raise NotImplementedError

    def forward(self, ids: Sequence[Sequence[int]]) -> list[Any]:
        raise NotImplementedError

    def postprocess(self, outputs: list[Any], params: dict) -> list[Any]:
        return outputs

    def describe(self) -> dict:
        return {"kind": self.kind, "engine": self.engine}


class _HFRuntime(Runtime):
    """A Hugging Face encoder run by an engine (:mod:`workers.engines`): the engine
    tokenizes and returns one row per text (the pooled embedding / class probabilities)."""

    def __init__(self, spec: ModelSpec, threads: int = 1):
        super().__init__(spec, threads)
        from workers.engines import load_backend

        self.backend = load_backend(spec, threads)
        self.engine = self.backend.engine
        self.build_s = self.backend.build_s
        self.max_seq_length = self.backend.max_seq_length
        self.pad_id = self.backend.pad_id

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.backend.tokenize(texts)

    def forward(self, ids):
        from workers.engines import pad_batch

        return list(self.backend.run(*pad_batch(ids, self.pad_id)))

    def describe(self) -> dict:
        b = self.backend
        return {"kind": self.kind, "engine": b.engine, "quantize": b.quantize,
                "fallback_reason": b.fallback_reason}


class EmbedRuntime(_HFRuntime):
    """Mean-pooled, L2-normalised sentence embeddings (sentence-transformers' recipe)."""

    kind = "embed"

    def postprocess(self, outputs, params):
        import numpy as np

        if not len(outputs):
            return []
        arr = np.stack(outputs).astype(np.float64)
        if params.get("normalize", True):
            arr /= np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)
        # 7 decimals keep cosine to the float32 vector above 0.9999999 and halve the JSON.
        # Vectorised: rint(x * 1e7) / 1e7 is the double nearest each 7-decimal value (a
        # correctly rounded division), so the JSON is as short as Python's round() gives,
        # at ~1/20 of the per-float cost (~190 us per 384-d vector on this VM).
        return np.round(arr, 7).tolist()


class ClassifyRuntime(_HFRuntime):
    """Any sequence-classification model: a label and a score per label, per input."""

    kind = "classify"

    def postprocess(self, outputs, params):
        labels = self.backend.labels
        top_k = params.get("top_k")
        result = []
        for probs in outputs:
            order = sorted(range(len(probs)), key=lambda i: -float(probs[i]))
            if top_k:
                order = order[:top_k]
            scores = {str(labels.get(i, i)): round(float(probs[i]), 6) for i in order}
            result.append({"label": str(labels.get(order[0], order[0])), "scores": scores})
        return result


class DebugRuntime(Runtime):
    """A model-free kind for tests and the overhead benchmark.

    Each output is the text's length in characters. Texts that start with ``!`` misbehave
    on purpose, to stand in for poison inputs: ``!raise`` raises, ``!crash`` kills the
    worker process, ``!hang`` never returns, ``!sleep:<ms>`` sleeps that long in the forward
    pass. The ``sleep_ms`` parameter makes a job hold its slot that long after its forward
    pass (the jobs of one pass overlap, like long jobs in parallel slots). Only registered
    from an ``ELASTIQ_MODELS`` file, never by default.
    """

    kind = "debug"

    def encode(self, texts):
        return [[len(t)] + [ord(c) for c in t[:64]] for t in texts]

    def forward(self, ids):
        for seq in ids:
            text = "".join(chr(c) for c in seq[1:])
            if text.startswith("!raise"):
                raise RuntimeError("debug model asked to raise")
            if text.startswith("!crash"):
                os.kill(os.getpid(), signal.SIGKILL)
            if text.startswith("!hang"):
                time.sleep(3600)
            if text.startswith("!sleep:"):
                time.sleep(float(text[7:].split()[0]) / 1000)
        return [seq[0] for seq in ids]

    def hold_s(self, params) -> float:
        return float(params.get("sleep_ms") or 0) / 1000

    def postprocess(self, outputs, params):
        if params.get("fail"):
            raise JobFailedError(params["fail"])
        return [int(x) for x in outputs]


def heavy_modules() -> list[str]:
    """Which of the big ML libraries this process has imported, for the heartbeat: a
    worker serving onnx graphs shows neither torch nor transformers."""
    import sys

    return sorted(m for m in ("torch", "transformers", "onnxruntime", "tokenizers") if m in sys.modules)


KIND_CLASSES = {"embed": EmbedRuntime, "classify": ClassifyRuntime, "debug": DebugRuntime}


def runtime_class(spec: ModelSpec) -> type[Runtime]:
    """Published versions (``store:``) and training import their modules only when asked for."""
    if spec.kind == "train":
        from workers.train_runtime import TrainRuntime

        return TrainRuntime
    if spec.kind == "classify" and spec.versioned:
        from workers.versioned import VersionedRuntime

        return VersionedRuntime
    return KIND_CLASSES[spec.kind]


def load(spec: ModelSpec, threads: int = 1) -> Runtime:
    """Load ``spec`` for a process given ``threads`` CPUs (the engine's intra-op threads)."""
    started = time.monotonic()
    runtime = runtime_class(spec)(spec, threads)
    log.info("loaded model %s (%s, engine %s) in %.2fs", spec.name, spec.kind, runtime.engine or "-",
             time.monotonic() - started)
    return runtime
