"""Model versions: immutable artifacts on disk, and the registry of them in Redis.

The store (``$ELASTIQ_MODEL_STORE``, default ``$ELASTIQ_HOME/models``; a directory or a
volume every worker can read) holds one directory per version::

    <name>/<version>/manifest.json      files (size + sha256 of every other file), metrics,
                                        lineage, parity references, edge threshold
    <name>/<version>/cloud/             transformers files + head + model.onnx (fp32) + tokenizer.json
    <name>/<version>/edge/              the distilled student: same, model.onnx is int8

A version directory is written under a staging name and renamed into place when complete
(training/artifact.py), its files are made read-only, and it is never rewritten: a new
model is a new version. The version id is ``v<UTC time>-<first 8 hex of the files' hash>``.

Before a version is published, and again before a worker or an edge client serves it,
:func:`verify` checks every file against the manifest and :func:`parity` runs its ONNX
graph (onnxruntime + tokenizers, as served) on the reference texts recorded at build time:
fp32 within 1e-4 of the torch probabilities, int8 within 1e-3 of its own recorded
outputs, identical labels. A version failing either is refused with the reason
(:class:`ModelVersionError`), never served.

Redis (:class:`Versions`): ``elastiq:versions:<name>`` (version -> summary),
``elastiq:current:<name>`` (the version served), ``elastiq:history:<name>`` (versions a
publish replaced, newest first: what rollback restores), and a PUBLISH on
``elastiq:model-updates`` at every change. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from elastiq import contract
from elastiq.errors import ModelVersionError

MANIFEST = "manifest.json"
PARTS = ("cloud", "edge")
TOLERANCE = {"fp32": 1e-4, "int8": 1e-3}


def store_root(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("ELASTIQ_MODEL_STORE"):
        return Path(env["ELASTIQ_MODEL_STORE"]).expanduser().resolve()
    return (Path(env.get("ELASTIQ_HOME", ".elastiq")).expanduser() / "models").resolve()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_table(directory: Path) -> dict[str, dict]:
    """Every file under ``directory`` but the manifest: relative path -> size, sha256."""
    out = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[p.relative_to(directory).as_posix()] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return out


def version_id(files: dict[str, dict], now: float | None = None) -> str:
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return time.strftime("v%Y%m%d%H%M%S", time.gmtime(now if now is not None else time.time())) + "-" + digest[:8]


def version_dir(name: str, version: str, root: Path | None = None) -> Path:
    if not version or "/" in version or version.startswith("."):
        raise ModelVersionError(f"{version!r} is not a version id")
    return (root or store_root()) / name / version


def verify(directory: Path, prefix: str = "") -> dict:
    """The manifest, if every file it lists (under ``prefix``, e.g. ``edge/``) is there with its
    size and sha256; else refuse."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ModelVersionError(f"{directory}: no readable manifest ({exc})") from None
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelVersionError(f"{directory}: the manifest lists no files")
    for rel, want in files.items():
        if not rel.startswith(prefix):
            continue
        path = directory / rel
        try:
            if path.stat().st_size != want.get("size"):
                raise ModelVersionError(f"{directory.name}: {rel} is {path.stat().st_size} bytes, the manifest "
                                        f"says {want.get('size')} (truncated or replaced): refused")
            if sha256_file(path) != want.get("sha256"):
                raise ModelVersionError(f"{directory.name}: {rel} does not match its sha256 (corrupt): refused")
        except OSError as exc:
            raise ModelVersionError(f"{directory.name}: {rel} is unreadable ({exc.strerror}): refused") from None
    return manifest


class OnnxClassifier:
    """One part of a version (``cloud`` or ``edge``), served with onnxruntime + tokenizers."""

    def __init__(self, part_dir: Path, threads: int = 1):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = json.loads((part_dir / "head.json").read_text())
        self.labels = [str(x) for x in meta["labels"]]
        self.max_seq_length = int(meta["max_seq_length"])
        self.pad_id = int(meta.get("pad_id") or 0)
        self.tokenizer = Tokenizer.from_file(str(part_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_seq_length)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = max(1, threads), 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(part_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def run(self, ids: Sequence[Sequence[int]]):
        import numpy as np

        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, seq in enumerate(ids):
            input_ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        return self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]

    def predict(self, texts: Sequence[str], batch: int = 32):
        import numpy as np

        rows = [self.run(self.tokenize(texts[i:i + batch])) for i in range(0, len(texts), batch)]
        return np.concatenate(rows) if rows else np.zeros((0, len(self.labels)), np.float32)


def parity(directory: Path, manifest: dict, part: str, threads: int = 1) -> OnnxClassifier:
    """Load ``part`` and check it on the recorded reference texts; the loaded model, or refuse."""
    import numpy as np

    ref = (manifest.get("parity") or {}).get(part)
    if not ref:
        raise ModelVersionError(f"{directory.name}: no parity reference for {part}: refused")
    try:
        model = OnnxClassifier(directory / part, threads)
    except Exception as exc:  # noqa: BLE001 - onnxruntime/tokenizers raise many types
        raise ModelVersionError(f"{directory.name}: the {part} graph does not load: {exc}: refused") from None
    got = model.predict(ref["texts"])
    want = np.asarray(ref["probs"], dtype=np.float64)
    diff = float(np.abs(got - want).max())
    tol = TOLERANCE[ref["precision"]]
    if diff > tol or (got.argmax(1) != want.argmax(1)).any():
        raise ModelVersionError(f"{directory.name}: the {part} graph fails its parity check (max diff {diff:.2e}, "
                                f"tolerance {tol:g}, labels agree {float((got.argmax(1) == want.argmax(1)).mean()):.3f})"
                                ": refused")
    return model


def check(name: str, version: str, root: Path | None = None, parts: Sequence[str] = PARTS) -> dict:
    """Hashes, then parity of each part: the manifest of a servable version, or refuse."""
    directory = version_dir(name, version, root)
    if not directory.is_dir():
        raise ModelVersionError(f"version {version!r} of {name!r} is not in the model store {directory.parent}")
    manifest = verify(directory)
    for part in parts:
        if part in manifest.get("parity", {}):
            parity(directory, manifest, part)
    return manifest


def summary(manifest: dict) -> dict:
    keep = ("name", "version", "created_at", "metrics", "edge", "lineage")
    return {k: manifest.get(k) for k in keep}


class Versions:
    """The registry in Redis: name -> versions, current, history."""

    def __init__(self, redis, root: Path | None = None):
        self.redis = redis
        self.root = root or store_root()

    def register(self, name: str, version: str) -> dict:
        """Record a version that is in the store (checked first); not served until published."""
        manifest = check(name, version, self.root)
        self.redis.hset(contract.versions_key(name), version, json.dumps(summary(manifest)))
        return manifest

    def versions(self, name: str) -> dict[str, dict]:
        raw = self.redis.hgetall(contract.versions_key(name))
        return {v: json.loads(s) for v, s in sorted(raw.items())}

    def names(self) -> list[str]:
        return sorted(k[len(contract.VERSIONS_PREFIX):] for k in self.redis.scan_iter(contract.VERSIONS_PREFIX + "*"))

    def current(self, name: str) -> str | None:
        return self.redis.get(contract.current_key(name))

    def history(self, name: str) -> list[str]:
        return self.redis.lrange(contract.history_key(name), 0, -1)

    def publish(self, name: str, version: str) -> dict:
        """Check the version (hashes + parity), then make it current; the old one goes on the history."""
        manifest = self.register(name, version)
        old = self.current(name)
        pipe = self.redis.pipeline(transaction=True)
        if old and old != version:
            pipe.lpush(contract.history_key(name), old)
        pipe.set(contract.current_key(name), version)
        pipe.publish(contract.MODEL_UPDATES, json.dumps({"name": name, "version": version, "action": "publish"}))
        pipe.execute()
        return {"name": name, "version": version, "previous": old, "metrics": manifest.get("metrics")}

    def rollback(self, name: str) -> dict:
        """Restore the version the last publish replaced (checked again first)."""
        previous = self.redis.lindex(contract.history_key(name), 0)
        if previous is None:
            raise ModelVersionError(f"model {name!r} has no earlier version to roll back to")
        check(name, previous, self.root)
        old = self.current(name)
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpop(contract.history_key(name))
        pipe.set(contract.current_key(name), previous)
        pipe.publish(contract.MODEL_UPDATES, json.dumps({"name": name, "version": previous, "action": "rollback"}))
        pipe.execute()
        return {"name": name, "version": previous, "replaced": old}
