"""Count the tokens a model sees, for the OpenAI ``usage`` field, without torch.

The gateway loads the model's own ``tokenizer.json`` with the ``tokenizers`` library (the
Rust tokenizer that the worker's transformers "fast" tokenizer wraps), with the worker's
truncation length (the model's ``max_seq_length`` option, else the tokenizer's
``model_max_length``, capped by ``max_position_embeddings``) and special tokens, so
``prompt_tokens`` is the number of token positions the forward pass runs over. A model
directory without ``tokenizer.json`` gets no ``usage`` counts (None), never a guess.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from elastiq.registry import ModelSpec

log = logging.getLogger(__name__)
DEFAULT_MAX_LENGTH = 512


def max_length(spec: ModelSpec, path: Path) -> int:
    """The worker's truncation length for this model (see workers/runtime.py)."""
    limit = spec.options.get("max_seq_length") or \
        _json(path / "tokenizer_config.json").get("model_max_length") or DEFAULT_MAX_LENGTH
    positions = _json(path / "config.json").get("max_position_embeddings")
    if isinstance(positions, int):
        limit = min(int(limit), positions)
    return min(int(limit), 1_000_000)      # transformers' "no limit" sentinel is 1e30


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


class TokenCounter:
    def __init__(self):
        self._tokenizers: dict[str, object] = {}
        self._lock = threading.Lock()

    def count(self, spec: ModelSpec, texts: list[str]) -> int | None:
        tok = self._load(spec)
        if tok is None:
            return None
        if len(texts) <= 8:         # no thread-pool hand-off for a few texts (the common case)
            return sum(len(tok.encode(t).ids) for t in texts)
        return sum(len(enc.ids) for enc in tok.encode_batch(texts))

    def preload(self, spec: ModelSpec) -> None:
        self._load(spec)

    def _load(self, spec: ModelSpec):
        with self._lock:
            if spec.name in self._tokenizers:
                return self._tokenizers[spec.name]
            tok = None
            try:
                from tokenizers import Tokenizer

                path = spec.resolve_path()
                file = path / "tokenizer.json"
                if file.is_file():
                    tok = Tokenizer.from_file(str(file))
                    tok.no_padding()
                    tok.enable_truncation(max_length(spec, path))
                else:
                    log.warning("model %s has no tokenizer.json: usage counts are not reported", spec.name)
            except Exception as exc:  # noqa: BLE001 - a broken tokenizer must not break serving
                log.warning("model %s: cannot load its tokenizer (%s): usage not reported", spec.name, exc)
            self._tokenizers[spec.name] = tok
            return tok
