"""The classifier: a transformers encoder, mean pooling over real tokens, a linear head.

Mean pooling is the recipe the base sentence encoder (all-MiniLM-L6-v2) was trained with,
so the head starts from embeddings that already separate sentences well. The edge model
is a *student*: the same architecture with fewer layers, initialised from the fine-tuned
encoder's embeddings and evenly spaced layers, then distilled (training/loop.py).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import transformers

HEAD_FILE = "head.safetensors"
HEAD_META = "head.json"


class Classifier(torch.nn.Module):
    def __init__(self, encoder, n_labels: int = 2, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self, input_ids, attention_mask):
        """Logits, one row per text."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return self.head(self.dropout(pooled))


class Probabilities(torch.nn.Module):
    """What is exported and served: softmax of the logits, float32."""

    def __init__(self, model: Classifier):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return torch.softmax(self.model(input_ids, attention_mask).float(), dim=-1)


def load_base(path: Path) -> tuple[object, Classifier]:
    """``(tokenizer, classifier)`` with a fresh head on the encoder at ``path``."""
    tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    encoder = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
    return tok, Classifier(encoder)


def student_of(teacher: Classifier, layers: int) -> Classifier:
    """A copy of ``teacher`` keeping ``layers`` evenly spaced encoder layers (first and last
    included), its embeddings and its head."""
    n = teacher.encoder.config.num_hidden_layers
    keep = sorted({round(i * (n - 1) / max(1, layers - 1)) for i in range(layers)}) if layers > 1 else [n - 1]
    config = copy.deepcopy(teacher.encoder.config)
    config.num_hidden_layers = len(keep)
    encoder = type(teacher.encoder)(config)
    student = Classifier(encoder, teacher.head.out_features)
    state = teacher.state_dict()
    mapped = {}
    for key, value in state.items():
        if ".layer." in key:
            prefix, rest = key.split(".layer.", 1)
            idx, tail = rest.split(".", 1)
            if int(idx) not in keep:
                continue
            key = f"{prefix}.layer.{keep.index(int(idx))}.{tail}"
        mapped[key] = value.clone()
    missing, _ = student.load_state_dict(mapped, strict=False)
    bad = [k for k in missing if "pooler" not in k]
    if bad:
        raise RuntimeError(f"student initialisation left weights unset: {bad[:5]}")
    return student


def save(model: Classifier, tokenizer, out: Path, labels: list[str], max_seq_length: int) -> None:
    """transformers files for the encoder + the head as safetensors (no pickle)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    save_file({"weight": model.head.weight.detach().contiguous(), "bias": model.head.bias.detach().contiguous()},
              str(out / HEAD_FILE))
    (out / HEAD_META).write_text(json.dumps({"pooling": "mean", "labels": labels,
                                             "max_seq_length": max_seq_length}, indent=1))


def load(path: Path) -> tuple[object, Classifier, dict]:
    """``(tokenizer, classifier, head meta)`` saved by :func:`save`, in eval mode."""
    from safetensors.torch import load_file

    meta = json.loads((path / HEAD_META).read_text())
    tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    encoder = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
    model = Classifier(encoder, len(meta["labels"]))
    weights = load_file(str(path / HEAD_FILE))
    model.head.load_state_dict({"weight": weights["weight"], "bias": weights["bias"]})
    return tok, model.eval(), meta
