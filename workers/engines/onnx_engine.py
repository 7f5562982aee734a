"""The onnx engine: ONNX Runtime on an exported, verified graph. No torch, no transformers.

Everything it needs is in the cache entry (:mod:`workers.engines.cache`): ``model.onnx``
(the model and its head: pooled embeddings or class probabilities out), ``tokenizer.json``
(the tokenizer transformers itself runs, saved by the exporter) and the manifest's
``meta`` (pad id, length limits, labels, read by the exporter through transformers).

Threads: intra-op = the CPUs the worker is given, inter-op = 1, sequential execution,
no spinning (a pool's CPUs are shared with the worker's own Python threads and with other
workers; a spinning pool would burn them between passes). The CPU memory arena is off:
a long-text pass allocates attention buffers of batch x heads x seq^2 floats (~100 MB
each at 32 x 256 tokens), and an arena would keep its peak resident for the process'
life. Without it glibc still keeps freed heap pages (its mmap threshold grows with the
buffers freed), so after a pass of >= ``TRIM_TOKENS`` padded tokens the worker calls
``malloc_trim(0)`` (~1 ms): measured on MiniLM, RSS stays ~145 MB of graph + runtime
after a 32 x 256 pass instead of ~450-490 MB.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from elastiq.errors import ModelLoadError
from elastiq.registry import ModelSpec
from workers.engines import max_seq_length

TRIM_TOKENS = 1024


def _libc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):   # not glibc: nothing to trim
        return None


_malloc_trim = _libc_trim()


def release_free_memory() -> None:
    if _malloc_trim is not None:
        _malloc_trim(0)


def session_options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.enable_cpu_mem_arena = False
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def light_tokenizer(path, max_length: int) -> Tokenizer:
    """``tokenizer.json`` with the file's own padding/truncation replaced by ours (the same
    settings transformers applies for ``truncation=True, max_length=..., padding=False``)."""
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


class OnnxBackend:
    engine = "onnx"
    fallback_reason = None
    build_s = 0.0

    def __init__(self, entry, spec: ModelSpec, threads: int = 1):
        meta = entry.manifest["meta"]
        self.quantize = spec.quantize
        self.entry = entry
        self.build_s = entry.build_s
        self.max_seq_length = max_seq_length(spec.options.get("max_seq_length"),
                                             meta.get("model_max_length"),
                                             meta.get("max_position_embeddings"))
        self.pad_id = int(meta.get("pad_id") or 0)
        self.labels = {int(k): str(v) for k, v in (meta.get("id2label") or {}).items()}
        self.tokenizer = light_tokenizer(entry.path("tokenizer.json"), self.max_seq_length)
        try:
            self.session = ort.InferenceSession(str(entry.path("model.onnx")), session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # an ORT that cannot run this graph (opset, contrib ops)
            raise ModelLoadError(f"model {spec.name!r}: onnxruntime cannot load {entry.dir}: {exc}") from exc
        self.output = self.session.get_outputs()[0].name

    def tokenize(self, texts):
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output], {"input_ids": input_ids, "attention_mask": attention_mask})
        if input_ids.size >= TRIM_TOKENS:
            release_free_memory()
        return out[0]
