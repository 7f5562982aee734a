"""Reading settings from environment variables: one parser for every part.

A dataclass of settings is filled from ``<PREFIX><FIELD NAME>`` variables (or the name a
field's ``metadata={"env": ...}`` gives); a value that does not parse as the field's type
raises :class:`~elastiq.errors.ConfigError` naming the variable, when the object is built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from elastiq.errors import ConfigError


def parse(key: str, raw: str, type_name) -> object:
    """``raw`` as the type a dataclass field names (bool, int, float, Path, str, or optional ones)."""
    type_name = str(type_name)
    try:
        if "bool" in type_name:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if "None" in type_name and raw == "":
            return None
        if "int" in type_name:
            return int(raw)
        if "float" in type_name:
            return float(raw)
        if "Path" in type_name:
            return Path(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a valid {type_name}") from None


def env_name(prefix: str, f) -> str:
    return f.metadata.get("env") or prefix + f.name.upper()


def read(cls, prefix: str, env: Mapping[str, str] | None = None, *, skip=(), **overrides):
    """An instance of the dataclass ``cls`` from the environment; ``overrides`` win."""
    env = os.environ if env is None else env
    values: dict = {}
    for f in fields(cls):
        key = env_name(prefix, f)
        if f.name not in skip and f.name not in overrides and key in env:
            values[f.name] = parse(key, env[key], f.type)
    return cls(**values, **overrides)


def number(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"{key} must be >= 0, got {value}")
    return value
