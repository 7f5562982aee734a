"""The engine cache on disk: where an exported graph lives, and whether it can be trusted.

Layout under the cache root (``$ELASTIQ_ENGINE_CACHE``, else ``$ELASTIQ_HOME/engines``,
``ELASTIQ_HOME`` defaulting to ``./.elastiq``)::

    <model hash[:20]>-<kind>-onnx<opset>-<fp32|int8r<recipe>>-f<format>/
        model.onnx  tokenizer.json  manifest.json     # or failed.json
    <same name>.lock       # flock: one exporter per entry, across processes
    index.json             # "<source>|<kind>|<quantize>|..." -> entry name (last export)
    memo/<path hash>.json  # a model directory's content hash, keyed by its files' stat

The key is the *content* of the model directory (every top-level file, sha256), so a new
model version is a new entry; an int8 entry's key also names the quantization recipe
(:data:`workers.engines.int8.RECIPE`), so a graph quantized the old way is not reused.
Hashing ~90 MB on every worker start would cost ~0.1 s, so the hash is memoised per
directory by each file's size and mtime (as git's index does); a changed file changes its
stat and is hashed again.

An entry is valid only if ``manifest.json`` exists (it is written last, atomically, by
``os.replace``) and every file it lists has the recorded size and sha256: a truncated or
corrupt graph is detected before it is served, and re-exported.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

FORMAT = 1          # bump when the exported graph's layout or head changes
OPSET = 17
FILES = ("model.onnx", "tokenizer.json")


def cache_root(env=None) -> Path:
    env = os.environ if env is None else env
    if env.get("ELASTIQ_ENGINE_CACHE"):
        return Path(env["ELASTIQ_ENGINE_CACHE"]).expanduser().resolve()
    return (Path(env.get("ELASTIQ_HOME", ".elastiq")).expanduser() / "engines").resolve()


def variant(quantize: str | None) -> str:
    """``fp32``, or the quantization with its recipe version (``int8r2``)."""
    if not quantize:
        return "fp32"
    from workers.engines import int8

    return f"{quantize}r{int8.RECIPE}" if quantize == "int8" else quantize


def entry_name(model_hash: str, kind: str, quantize: str | None, opset: int = OPSET) -> str:
    return f"{model_hash[:20]}-{kind}-onnx{opset}-{variant(quantize)}-f{FORMAT}"


def index_key(source: str, kind: str, quantize: str | None, opset: int = OPSET) -> str:
    return f"{source}|{kind}|{variant(quantize)}|onnx{opset}|f{FORMAT}"


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def model_hash(model_dir: Path, memo_dir: Path | None = None) -> str:
    """sha256 over the directory's top-level files (name, size, content hash)."""
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    stats = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    memo = memo_dir / (hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:24] + ".json") \
        if memo_dir else None
    if memo is not None:
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads(memo.read_text())
            if saved.get("files") == stats:
                return saved["hash"]
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}\0{stats[p.name][0]}\0{sha256_file(p)}\n".encode())
    digest = h.hexdigest()
    if memo is not None:
        with contextlib.suppress(OSError):     # a read-only cache still serves
            write_json(memo, {"path": str(model_dir.resolve()), "files": stats, "hash": digest})
    return digest


def write_json(path: Path, data: dict) -> None:
    """Atomically: a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class Entry:
    """A verified cache entry."""

    dir: Path
    manifest: dict
    build_s: float = 0.0    # what this process spent making it servable (export, lock wait); 0: cached

    def path(self, name: str) -> Path:
        return self.dir / name


class Invalid(Exception):
    """The entry cannot be served; the message says why."""


def load_entry(entry_dir: Path) -> Entry:
    """The entry at ``entry_dir`` if its manifest and every file it lists check out.

    The graph is then opened by path: a file replaced after this check was replaced by
    ``os.replace`` with a complete graph that passed its parity check (a refused graph
    never enters an entry), so the check cannot be raced into serving a wrong one.
    """
    manifest = read_json(entry_dir / "manifest.json")
    if manifest is None:
        raise Invalid(f"no readable manifest in {entry_dir}")
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise Invalid(f"manifest in {entry_dir} has format {manifest.get('format')!r}, want {FORMAT}")
    for name in FILES:
        want = manifest["files"].get(name) or {}
        path = entry_dir / name
        try:
            size = path.stat().st_size
            if size != want.get("size"):
                raise Invalid(f"{name} in {entry_dir} is {size} bytes, manifest says {want.get('size')} "
                              "(truncated or replaced)")
            if sha256_file(path) != want.get("sha256"):
                raise Invalid(f"{name} in {entry_dir} does not match its manifest sha256 (corrupt)")
        except OSError as exc:
            raise Invalid(f"{name} unreadable in {entry_dir}: {exc.strerror}") from None
    return Entry(entry_dir, manifest)


def write_manifest(entry_dir: Path, manifest: dict) -> None:
    files = {name: {"size": (entry_dir / name).stat().st_size, "sha256": sha256_file(entry_dir / name)}
             for name in FILES}
    write_json(entry_dir / "manifest.json", {**manifest, "format": FORMAT, "files": files})


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive flock on ``path`` (created if needed), released on exit or process death."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lookup_index(root: Path, key: str) -> str | None:
    name = (read_json(root / "index.json") or {}).get(key)
    return name if isinstance(name, str) and "/" not in name and not name.startswith(".") else None


def record_index(root: Path, key: str, name: str) -> None:
    with locked(root / "index.lock"):
        index = read_json(root / "index.json") or {}
        index[key] = name
        write_json(root / "index.json", index)
