"""A training job's specification: what to train, on what, with which hyper-parameters.

A ``train`` job is an ordinary job on the ``train`` model's queue (its own scaling group)
whose single input is this spec as JSON. The client checks it with :func:`parse` before
anything is queued and the training worker checks it again with the same function, so a
bad dataset, an unknown base model or an out-of-range hyper-parameter is a typed
:class:`~elastiq.errors.ValidationError` on both sides. No torch here.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

from elastiq import datasets
from elastiq.errors import BadHyperParamsError, InputTypeError, UnknownModelError
from elastiq.registry import Registry

TRAIN_MODEL = "train"          # the queue elastiq.train; workers serve it with --models train

# name -> (type, min, max); None bounds are open
RANGES: dict[str, tuple[type, float | None, float | None]] = {
    "epochs": (int, 1, 20),
    "lr": (float, 1e-7, 1e-2),
    "batch_size": (int, 1, 256),
    "max_train": (int, 2, None),
    "max_eval": (int, 2, None),
    "max_seq_length": (int, 8, 512),
    "seed": (int, 0, 2**31 - 1),
    "student_layers": (int, 0, 24),
    "student_epochs": (int, 1, 20),
    "student_lr": (float, 1e-7, 1e-2),
    "target_drop": (float, 0.0, 0.5),
}


@dataclass(frozen=True)
class TrainSpec:
    dataset: str
    base: str
    name: str = "sentiment"               # the model name the version is registered under
    epochs: int = 2
    lr: float = 5e-5
    batch_size: int = 32
    max_train: int | None = None          # the first N training sentences (balanced); None: all
    max_eval: int | None = None           # the first N validation sentences; None: all
    max_seq_length: int = 64
    seed: int = 0
    student_layers: int = 2               # the edge model's layers (0: no edge model)
    student_epochs: int = 2
    student_lr: float = 1e-4
    target_drop: float = 0.005            # edge threshold: cascade accuracy >= cloud - this (validation)
    publish: bool = False                 # make it the current version once trained
    run_id: str = ""                      # the job id: progress is written on its record

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def hyper(self) -> dict:
        skip = {"dataset", "base", "name", "publish", "run_id"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def parse(raw: object, registry: Registry) -> TrainSpec:
    """A checked :class:`TrainSpec` from a JSON string (or a mapping)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InputTypeError("a train job's input must be its spec as a JSON object") from None
    if not isinstance(raw, dict):
        raise InputTypeError("a train job's spec must be a JSON object")
    known = {f.name for f in fields(TrainSpec)}
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise BadHyperParamsError(f"unknown training parameter(s) {unknown} (known: {sorted(known)})")
    datasets.check_name(raw.get("dataset"))
    base = raw.get("base")
    spec = registry.get(base) if isinstance(base, str) else None
    if spec is None or spec.kind not in ("embed", "classify") or spec.engine == "":
        raise UnknownModelError(f"base model {base!r} is not an encoder in the registry")
    name = raw.get("name", "sentiment")
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not all(c.isalnum() or c in "-_" for c in name):
        raise BadHyperParamsError(f"name {name!r} must be 1-64 letters, digits, '-' or '_'")
    for key, (kind, lo, hi) in RANGES.items():
        if raw.get(key) is not None:
            _check_number(key, raw[key], kind, lo, hi)
    for key in ("publish",):
        if key in raw and not isinstance(raw[key], bool):
            raise BadHyperParamsError(f"{key} must be true or false")
    if "run_id" in raw and (not isinstance(raw["run_id"], str) or len(raw["run_id"]) > 64):
        raise BadHyperParamsError("run_id must be a string of at most 64 characters")
    values = {k: (float(v) if k in RANGES and RANGES[k][0] is float and v is not None else v)
              for k, v in raw.items()}
    return TrainSpec(**values)


def _check_number(key: str, value: object, kind: type, lo, hi) -> None:
    ok_type = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
    if isinstance(value, bool) or not ok_type:
        raise BadHyperParamsError(f"{key} must be {'a number' if kind is float else 'an integer'}, "
                                  f"got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadHyperParamsError(f"{key} must be finite")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise BadHyperParamsError(f"{key}={value!r} is out of range [{lo}, {hi if hi is not None else 'inf'}]")
