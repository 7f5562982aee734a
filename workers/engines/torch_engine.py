"""The torch engine: transformers in PyTorch eager mode.

It is the reference every exported graph is checked against, the exporter's source
(:mod:`workers.engines.export` wraps the same :func:`head` module), and the fallback for a
model that does not export. Importing this module imports torch and transformers.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import transformers

from elastiq.errors import ModelLoadError
from elastiq.registry import ModelSpec
from workers.engines import max_seq_length

AUTO_CLASSES = {"embed": "AutoModel", "classify": "AutoModelForSequenceClassification"}


def configure(threads: int) -> None:
    """Set torch's thread pools explicitly: never more threads than the CPUs given."""
    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process (only allowed once)
        pass


class EmbedHead(torch.nn.Module):
    """Mean pooling over the real tokens (sentence-transformers' recipe), float32 out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class ClassifyHead(torch.nn.Module):
    """Class probabilities (softmax of the logits), float32 out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        return torch.softmax(logits, dim=-1)


HEADS = {"embed": EmbedHead, "classify": ClassifyHead}


def load_hf(path, kind: str, name: str = "", **model_kw):
    """``(tokenizer, model)`` from a local directory, in eval mode; ModelLoadError if not."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = getattr(transformers, AUTO_CLASSES[kind]).from_pretrained(
            str(path), local_files_only=True, **model_kw)
    except Exception as exc:  # transformers raises many types for a bad directory
        raise ModelLoadError(f"cannot load model {name!r} from {path}: {exc}") from exc
    return tokenizer, model.eval()


def _quantize_int8(model):
    """Dynamic int8 on the layers that tolerate it: each block's FFN input projection and
    attention output projection, weights per channel. Quantizing every Linear (``int8-all``)
    is faster but the FFN *output* projections carry outliers that dynamic per-tensor
    activation scales clip: on MiniLM, all layers gave cosine 0.944 to fp32, this
    selection 0.991 (``elastiq bench quantize``). The onnx engine chooses its own set at
    export, on the probe texts (:mod:`workers.engines.int8`)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    chosen = {name: per_channel_dynamic_qconfig for name, mod in model.named_modules()
              if isinstance(mod, torch.nn.Linear)
              and name.endswith(("intermediate.dense", "attention.output.dense"))}
    if not chosen:      # not a BERT-style encoder: fall back to every Linear layer
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return torch.ao.quantization.quantize_dynamic(model, chosen, dtype=torch.qint8)


def quantized(model, quantize: str | None):
    if quantize == "int8":
        return _quantize_int8(model)
    if quantize == "int8-all":
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    if quantize == "bf16":
        return model.to(torch.bfloat16)
    return model


class TorchBackend:
    engine = "torch"

    def __init__(self, spec: ModelSpec, threads: int = 1, *, fallback_reason: str | None = None,
                 build_s: float = 0.0):
        configure(threads)
        self.quantize = spec.quantize
        self.fallback_reason = fallback_reason
        self.build_s = build_s       # the failed export attempt, if this process made it
        self.tokenizer, model = load_hf(spec.resolve_path(), spec.kind, spec.name)
        self.model = HEADS[spec.kind](quantized(model, spec.quantize)).eval()
        config = model.config
        self.labels = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
        self.max_seq_length = max_seq_length(spec.options.get("max_seq_length"),
                                             self.tokenizer.model_max_length,
                                             getattr(config, "max_position_embeddings", None))
        self.pad_id = self.tokenizer.pad_token_id or 0

    def tokenize(self, texts):
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_seq_length,
                             padding=False, return_attention_mask=False,
                             return_token_type_ids=False)
        return enc["input_ids"]

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        return out.numpy()
