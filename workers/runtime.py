"""Model runtimes: load a model once per worker process and run a forward pass.

A runtime has two steps, so the micro-batcher can sort by length and count padding
before it pads: ``encode(texts) -> token id lists`` and ``forward(id_lists) -> outputs``
(one raw output per text). ``postprocess(outputs, params)`` turns raw outputs into the
JSON a job returns.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any, Sequence

from elastiq.errors import JobFailedError, ModelLoadError
from elastiq.registry import ModelSpec

log = logging.getLogger(__name__)


def configure_torch(threads: int) -> None:
    """Set torch's thread pools explicitly: never more threads than the CPUs given."""
    import torch

    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process (only allowed once)
        pass


def _quantize_int8(torch, model):
    """Dynamic int8 on the layers that tolerate it: each block's FFN input projection and
    attention output projection, weights per channel. Quantizing every Linear (``int8-all``)
    is faster but the FFN *output* projections carry outliers that dynamic per-tensor
    activation scales clip: on MiniLM, all layers gave cosine 0.944 to fp32, this
    selection 0.991 (``elastiq bench quantize``)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    chosen = {name: per_channel_dynamic_qconfig for name, mod in model.named_modules()
              if isinstance(mod, torch.nn.Linear)
              and name.endswith(("intermediate.dense", "attention.output.dense"))}
    if not chosen:      # not a BERT-style encoder: fall back to every Linear layer
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return torch.ao.quantization.quantize_dynamic(model, chosen, dtype=torch.qint8)


class Runtime:
    kind = ""
    engine = "none"          # what runs the forward pass (reported by benchmarks and heartbeats)

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.name = spec.name

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        raise NotImplementedError

    def forward(self, ids: Sequence[Sequence[int]]) -> list[Any]:
        raise NotImplementedError

    def postprocess(self, outputs: list[Any], params: dict) -> list[Any]:
        return outputs


class _HFRuntime(Runtime):
    """Shared loading and padding for Hugging Face encoder models."""

    auto_class = "AutoModel"
    engine = "torch"

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        import torch
        import transformers

        path = spec.resolve_path()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = getattr(transformers, self.auto_class).from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # transformers raises many types for a bad directory
            raise ModelLoadError(f"cannot load model {spec.name!r} from {path}: {exc}") from exc
        model.eval()
        quantize = spec.options.get("quantize")
        if quantize == "int8":
            model = _quantize_int8(torch, model)
        elif quantize == "int8-all":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        elif quantize == "bf16":
            model = model.to(torch.bfloat16)
        elif quantize not in (None, "", "none"):
            raise ModelLoadError(f"model {spec.name!r}: unknown quantize option {quantize!r}")
        self.model = model
        self.torch = torch
        limit = int(spec.options.get("max_seq_length") or self.tokenizer.model_max_length or 512)
        self.max_seq_length = min(limit, getattr(model.config, "max_position_embeddings", limit))
        self.pad_id = self.tokenizer.pad_token_id or 0

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_seq_length,
                             padding=False, return_attention_mask=False,
                             return_token_type_ids=False)
        return enc["input_ids"]

    def _pad(self, ids: Sequence[Sequence[int]]):
        torch = self.torch
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return input_ids, mask


class EmbedRuntime(_HFRuntime):
    """Mean-pooled, L2-normalised sentence embeddings (sentence-transformers' recipe)."""

    kind = "embed"

    def forward(self, ids):
        torch = self.torch
        input_ids, mask = self._pad(ids)
        with torch.inference_mode():
            hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return list(pooled.numpy())

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
    auto_class = "AutoModelForSequenceClassification"

    def forward(self, ids):
        torch = self.torch
        input_ids, mask = self._pad(ids)
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits.float()
            probs = torch.softmax(logits, dim=-1)
        return list(probs.numpy())

    def postprocess(self, outputs, params):
        labels = self.model.config.id2label
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


KIND_CLASSES = {"embed": EmbedRuntime, "classify": ClassifyRuntime, "debug": DebugRuntime}


def load(spec: ModelSpec) -> Runtime:
    started = time.monotonic()
    runtime = KIND_CLASSES[spec.kind](spec)
    log.info("loaded model %s (%s) in %.2fs", spec.name, spec.kind, time.monotonic() - started)
    return runtime
