"""Engines: what runs a model's forward pass inside a worker.

A runtime (:mod:`workers.runtime`) owns a model's *kind* (embed: mean pooling and
normalisation; classify: labels and scores) and hands the work to a :class:`Backend`:

- ``onnx`` (the default for ``embed`` and ``classify``): ONNX Runtime on a graph exported
  once from the transformers model. The graph holds the model *and* its head (mean pooling
  for embed, softmax for classify), so it returns exactly what the torch path returns.
  Serving imports neither torch nor transformers: ``tokenizers`` + ``onnxruntime`` + numpy.
- ``torch``: PyTorch eager through transformers. The reference, the exporter, and the
  fallback for a model that does not export (the reason is logged and kept in the cache).

Export, cache and verification live in :mod:`workers.engines.cache` (content-hash keys,
a file lock, a manifest written last) and :mod:`workers.engines.export` (runs in a
subprocess: torch reference first, then ``torch.onnx.export``, then the parity check).

A backend has ``engine``, ``quantize``, ``max_seq_length``, ``pad_id``, ``labels`` (id ->
name, classify), ``fallback_reason`` (why an onnx model runs on torch, else None),
``tokenize(texts) -> id lists`` and ``run(input_ids, attention_mask) -> float32 array``
(one row per text: the pooled embedding, or the class probabilities).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Protocol

from elastiq.registry import ModelSpec

log = logging.getLogger(__name__)


class Backend(Protocol):
    engine: str
    quantize: str | None
    max_seq_length: int
    pad_id: int
    labels: dict[int, str]
    fallback_reason: str | None

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]: ...

    def run(self, input_ids, attention_mask): ...


def limit_tokenizer_threads(threads: int) -> None:
    """``tokenizers`` batches on a rayon pool as wide as the machine: keep it within the
    CPUs this worker is given (read once, when the pool first starts)."""
    os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, threads)))


def max_seq_length(option, model_max_length, max_position_embeddings) -> int:
    """Tokens kept per text: the registry's ``max_seq_length``, else the tokenizer's
    ``model_max_length`` (else 512), never more than the model's position embeddings."""
    limit = int(option or model_max_length or 512)
    return min(limit, int(max_position_embeddings or limit))


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int):
    """``(input_ids, attention_mask)``: int64 arrays, right-padded to the longest text."""
    import numpy as np

    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return input_ids, mask


def load_backend(spec: ModelSpec, threads: int = 1) -> Backend:
    """The backend ``spec`` asks for; an onnx model that cannot export runs on torch."""
    limit_tokenizer_threads(threads)
    if spec.engine == "torch":
        from workers.engines.torch_engine import TorchBackend

        return TorchBackend(spec, threads)
    from workers.engines import cache
    from workers.engines.onnx_engine import OnnxBackend

    found = cache.ensure(spec)
    if isinstance(found, cache.Fallback):
        log.warning("model %s: serving with torch instead of onnx: %s", spec.name, found.reason)
        from workers.engines.torch_engine import TorchBackend

        return TorchBackend(spec, threads, fallback_reason=found.reason, build_s=found.build_s)
    return OnnxBackend(found, spec, threads)
