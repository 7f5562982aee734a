"""Job validation, run by the client before queueing and by the worker before running.

The same function on both sides: a client that skips it (or a raw message pushed onto
the queue by hand) meets the same rules at the worker.
"""

from __future__ import annotations

import json
import math

from elastiq.errors import (
    BadParamsError,
    EmptyInputError,
    InputTooLargeError,
    InputTypeError,
)
from elastiq.registry import Registry
from elastiq.settings import Limits

# Parameters a job may carry, by kind, with their types.
PARAMS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "embed": {"normalize": bool},
    "classify": {"top_k": int},
    "debug": {"sleep_ms": (int, float), "fail": str},
    "train": {},
}


def validate_job(model: object, inputs: object, params: object,
                 registry: Registry, limits: Limits) -> tuple[str, list[str], dict]:
    """Return ``(model, inputs, params)`` checked, or raise a ValidationError subclass."""
    if not isinstance(model, str):
        raise InputTypeError(f"model must be a string, got {type(model).__name__}")
    spec = registry.get(model)
    if isinstance(inputs, (str, bytes)):
        raise InputTypeError("inputs must be a list of strings, not a single string")
    if not isinstance(inputs, (list, tuple)):
        raise InputTypeError(f"inputs must be a list of strings, got {type(inputs).__name__}")
    if not inputs:
        raise EmptyInputError("inputs is empty: give at least one text")
    if len(inputs) > limits.max_items_per_job:
        raise InputTooLargeError(
            f"{len(inputs)} inputs in one job; the limit is {limits.max_items_per_job} "
            "(split them over several jobs, or use Client.map)")
    for i, text in enumerate(inputs):
        if not isinstance(text, str):
            raise InputTypeError(f"inputs[{i}] must be a string, got {type(text).__name__}")
        if not text.strip():
            raise EmptyInputError(f"inputs[{i}] is empty or only white space")
        if len(text) > limits.max_text_chars:
            raise InputTooLargeError(
                f"inputs[{i}] has {len(text)} characters; the limit is {limits.max_text_chars}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputTypeError(f"inputs[{i}] is not valid Unicode (lone surrogate)") from None
    if spec.kind == "train":
        if len(inputs) != 1:
            raise InputTypeError("a train job has exactly one input: its spec (JSON)")
        from elastiq import trainspec

        trainspec.parse(inputs[0], registry)
    params = _validate_params(spec.kind, params)
    size = len(json.dumps([inputs, params], ensure_ascii=False).encode("utf-8"))
    if size > limits.max_message_bytes:
        raise InputTooLargeError(
            f"the job is {size} bytes encoded; the limit is {limits.max_message_bytes}")
    return model, list(inputs), params


def _validate_params(kind: str, params: object) -> dict:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BadParamsError(f"params must be a mapping, got {type(params).__name__}")
    allowed = PARAMS[kind]
    for key, value in params.items():
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise BadParamsError(f"unknown parameter {key!r} for a {kind} model (known: {known})")
        want = allowed[key]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise BadParamsError(f"parameter {key!r} has the wrong type {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise BadParamsError(f"parameter {key!r} must be finite")
    if "top_k" in params and params["top_k"] < 1:
        raise BadParamsError("top_k must be >= 1")
    return dict(params)
