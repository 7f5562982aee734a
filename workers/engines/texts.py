"""The texts an exported graph is checked on (``elastiq/data``).

``probe.txt``: the parity probe (fp32 graph vs torch) and the texts the int8 layer
selection was chosen on. ``heldout.txt``: never used for a choice; the int8 gate at export
and ``elastiq bench engine`` report agreement on it. Each set is its sentences plus longer
texts joined from them (a few past the model's length limit, so truncation is checked too).
"""

from __future__ import annotations

import random
from importlib import resources


def _sentences(name: str) -> list[str]:
    text = resources.files("elastiq").joinpath(f"data/{name}").read_text()
    body = text.split("\n---\n", 1)[-1]          # a header above the first '---' says what it is
    return [line.strip() for line in body.splitlines() if line.strip()]


def with_long(sentences: list[str], n_long: int, seed: int) -> list[str]:
    """``sentences`` + ``n_long`` texts of 2..24 sentences each + one of every sentence."""
    rnd = random.Random(seed)
    long = []
    for i in range(n_long):
        k = max(2, min(24, round(rnd.lognormvariate(0, 1.0) * 3)))
        long.append(" ".join(sentences[(i + j) % len(sentences)] for j in range(k)))
    return sentences + long + [" ".join(sentences)]


def probe_texts() -> list[str]:
    return with_long(_sentences("probe.txt"), 20, seed=7)


def heldout_texts() -> list[str]:
    return with_long(_sentences("heldout.txt"), 30, seed=11)
