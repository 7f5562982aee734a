"""Export once, cache, verify: :func:`ensure` returns a servable graph for a model spec.

1. Find the entry: the model directory's content hash + kind + opset + quantize
   (:mod:`workers.engines.store`). When the model files are not installed (a serving
   image that ships only the exported graph) the index names the entry last exported
   for the same source; such an entry can be served but not re-exported.
2. Fast path, no lock: the manifest and every file's size and sha256 check out -> serve.
3. Otherwise take the entry's file lock (two workers starting at once: one exports, the
   other waits and then finds the entry valid), look again, and export in a subprocess
   (:mod:`workers.engines.export`: the torch reference first, then ``torch.onnx.export``,
   then the parity check). The old manifest is removed before anything is rewritten and
   the new one is written last, so a half-written entry is never valid.

Outcomes of an export: the graph passes -> manifest, served. The graph exports but fails
parity -> ``failed.json`` and :class:`ModelLoadError` with the measured figures (a wrong
graph is never served). The model cannot be exported (the exporter raised) ->
``failed.json`` and a :class:`Fallback`: the worker serves it with torch and logs why.
``failed.json`` is read on later starts (no re-export per start); ``elastiq engine export
--force`` (or deleting the entry) tries again.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from elastiq.errors import ConfigError, ModelLoadError
from elastiq.registry import ModelSpec
from workers.engines import store

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
EXPORT_TIMEOUT_S = 900


@dataclass
class Fallback:
    """The model cannot be exported to onnx; serve it with torch."""

    reason: str
    build_s: float = 0.0    # what this process spent finding that out (the export attempt)


@dataclass
class Target:
    name: str                   # entry directory name
    root: Path
    model_dir: Path | None      # None: files not installed, serve-only
    problem: str = ""           # why the entry could not be served, if it could not

    @property
    def dir(self) -> Path:
        return self.root / self.name


def locate(spec: ModelSpec, root: Path | None = None) -> Target:
    root = root or store.cache_root()
    try:
        model_dir = spec.resolve_path()
    except ConfigError:
        name = store.lookup_index(root, store.index_key(spec.source, spec.kind, spec.quantize))
        if name is None:
            raise
        return Target(name, root, None)
    digest = store.model_hash(model_dir, root / "memo")
    return Target(store.entry_name(digest, spec.kind, spec.quantize), root, model_dir)


def ensure(spec: ModelSpec, *, root: Path | None = None, force: bool = False) -> store.Entry | Fallback:
    target = locate(spec, root)
    if not force:
        found = _servable(spec, target)
        if found is not None:
            return found
    if target.model_dir is None:
        raise ModelLoadError(f"model {spec.name!r}: the cached graph cannot be served ({target.problem}) "
                             "and the model files are not installed to export it again")
    started = time.monotonic()             # from here on a one-time cost: the cache keeps the result
    try:
        with store.locked(target.root / f"{target.name}.lock"):
            # another process may have exported it while this one waited for the lock
            found = None if force else _servable(spec, target)
            if found is None:
                found = _export(spec, target)
        return dataclasses.replace(found, build_s=round(time.monotonic() - started, 3))
    except OSError as exc:
        raise ModelLoadError(f"model {spec.name!r}: cannot write the engine cache {target.root} "
                             f"({exc}); {target.problem}") from exc


def _servable(spec: ModelSpec, target: Target) -> store.Entry | Fallback | None:
    """A valid entry, a recorded failure (Fallback, or ModelLoadError), or None: export."""
    try:
        return store.load_entry(target.dir)
    except store.Invalid as exc:
        problem = str(exc)
    failed = store.read_json(target.dir / "failed.json")
    if failed is not None:
        return _outcome(spec, failed, recorded=True)
    target.problem = problem
    return None


def _outcome(spec: ModelSpec, failed: dict, recorded: bool = False) -> Fallback:
    when = " (recorded earlier; `elastiq engine export --force` retries)" if recorded else ""
    if failed.get("status") == "export_error":
        return Fallback(f"the model does not export to onnx: {failed.get('reason')}{when}")
    raise ModelLoadError(f"model {spec.name!r}: the exported onnx graph was refused: "
                         f"{failed.get('reason')}; figures {json.dumps(failed.get('figures'))}{when}")


def _export(spec: ModelSpec, target: Target) -> store.Entry | Fallback:
    for name in ("manifest.json", "failed.json"):      # invalid from here until the end
        (target.dir / name).unlink(missing_ok=True)
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        raise ModelLoadError(f"model {spec.name!r}: no servable onnx graph in {target.dir} and torch/"
                             "transformers are not installed to export one (pip install "
                             "'elastiq[worker]', or pre-export with `elastiq engine export`)")
    for stale in target.root.glob(f".staging-{target.name}-*"):   # from an exporter whose worker died
        shutil.rmtree(stale, ignore_errors=True)                    # (we hold the lock: none is live)
    staging = target.root / f".staging-{target.name}-{os.getpid()}"
    staging.mkdir(parents=True)
    try:
        started = time.monotonic()
        log.info("model %s: exporting to onnx (%s) into %s: %s", spec.name, spec.quantize or "fp32",
                 target.dir, target.problem or "forced")
        result = run_export(target.model_dir, spec.kind, spec.quantize, staging)
        result.setdefault("figures", {})["export_s"] = round(time.monotonic() - started, 2)
        target.dir.mkdir(parents=True, exist_ok=True)
        if result.get("status") != "ok":
            store.write_json(target.dir / "failed.json", {**result, "source": spec.source})
            return _outcome(spec, result)
        for name in store.FILES:
            os.replace(staging / name, target.dir / name)
        store.write_manifest(target.dir, {
            "engine": "onnx", "kind": spec.kind, "quantize": spec.quantize, "opset": store.OPSET,
            "source": spec.source, "model_dir": str(target.model_dir), "created_at": time.time(),
            **{k: result[k] for k in ("meta", "figures", "versions", "exporter")}})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    store.record_index(target.root, store.index_key(spec.source, spec.kind, spec.quantize), target.name)
    log.info("model %s: exported in %.1fs, parity %s", spec.name, time.monotonic() - started,
             json.dumps(result["figures"]))
    return store.load_entry(target.dir)


def run_export(model_dir: Path, kind: str, quantize: str | None, out: Path) -> dict:
    """Run the exporter in a fresh interpreter (torch is never imported by the caller, and
    ``torch.onnx.export`` cannot disturb a model the caller is serving); its result."""
    cmd = [sys.executable, "-m", "workers.engines.export", "--model-dir", str(model_dir),
           "--kind", kind, "--quantize", quantize or "none", "--opset", str(store.OPSET), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(f"exporting {model_dir} took longer than {EXPORT_TIMEOUT_S}s") from None
    result = store.read_json(out / "result.json")
    if result is None:       # the exporter died: not recorded, the next start tries again
        raise ModelLoadError(f"the onnx exporter for {model_dir} exited with {proc.returncode} "
                             f"and no result:\n{proc.stderr[-3000:]}")
    return result
