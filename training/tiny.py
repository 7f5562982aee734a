"""A tiny random encoder (tests, ``bench cascade --smoke``): trains in seconds."""

from __future__ import annotations

from pathlib import Path


def build_tiny_encoder(path: Path, layers: int = 4) -> Path:
    """A random BERT encoder (hidden 32, ``layers`` layers) with MiniLM's tokenizer, saved to ``path``."""
    import torch
    import transformers

    from elastiq.registry import DEFAULT_MODELS

    tok = transformers.AutoTokenizer.from_pretrained(str(DEFAULT_MODELS["minilm"].resolve_path()),
                                                     local_files_only=True)
    config = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=layers,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path
