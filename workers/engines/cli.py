"""``elastiq engine export|check|list``: pre-export onnx graphs, check them, list the cache.

    elastiq engine export --models minilm,minilm-int8   # export (if not cached) + parity check
    elastiq engine export --models minilm --force       # export again, even over a recorded failure
    elastiq engine check --models minilm                # load as a worker would, run one text
    elastiq engine list --json                          # cache entries, valid or why not

``export`` needs torch + transformers (``elastiq[worker]``); ``check`` and ``list`` do
not. The compose image runs ``export`` in its build stage and ``check`` in its torch-free
runtime stage. The cache is ``$ELASTIQ_ENGINE_CACHE`` (default ``$ELASTIQ_HOME/engines``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from elastiq.errors import ModelLoadError
from elastiq.registry import Registry
from workers.engines import cache, store


def parse_args(argv):
    p = argparse.ArgumentParser(prog="elastiq engine", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("export", "check"):
        c = sub.add_parser(name)
        c.add_argument("--models", default=os.environ.get("ELASTIQ_WORKER_MODELS", "minilm"),
                       help="comma-separated registry names (env ELASTIQ_WORKER_MODELS, default minilm)")
        c.add_argument("--json", action="store_true", help="print the result as JSON")
        if name == "export":
            c.add_argument("--force", action="store_true", help="export again even if cached or failed before")
    lst = sub.add_parser("list")
    lst.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def export(spec, force: bool) -> dict:
    if spec.kind == "debug" or spec.engine != "onnx":
        return {"model": spec.name, "status": "skipped", "reason": f"engine {spec.engine or '-'}"}
    found = cache.ensure(spec, force=force)
    if isinstance(found, cache.Fallback):
        return {"model": spec.name, "status": "fallback-torch", "reason": found.reason}
    return {"model": spec.name, "status": "ok", "entry": str(found.dir), "figures": found.manifest.get("figures")}


def check(spec) -> dict:
    from workers import runtime as rt

    started = time.monotonic()
    runtime = rt.load(spec, 1)
    outputs = runtime.postprocess(runtime.forward(runtime.encode(["a check sentence"])), {})
    return {"model": spec.name, "status": "ok", **runtime.describe(), "load_s": round(time.monotonic() - started, 3),
            "output_len": len(outputs[0]) if isinstance(outputs[0], list) else 1, "heavy_modules": rt.heavy_modules()}


def entries(root) -> list[dict]:
    rows = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if root.is_dir() else []:
        if path.name == "memo":
            continue
        row = {"entry": path.name}
        try:
            m = store.load_entry(path).manifest
            row.update(status="valid", kind=m.get("kind"), quantize=m.get("quantize"), source=m.get("source"),
                       mb=round(m["files"]["model.onnx"]["size"] / 1e6, 1), figures=m.get("figures"))
        except store.Invalid as exc:
            failed = store.read_json(path / "failed.json")
            row.update(status=f"failed: {failed.get('status')}" if failed else "invalid",
                       reason=(failed or {}).get("reason") or str(exc))
        rows.append(row)
    return rows


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "list":
        root = store.cache_root()
        rows = entries(root)
        print(json.dumps({"cache": str(root), "entries": rows}, indent=1) if args.json else
              "\n".join([f"cache {root}"] + [f"  {r['entry']}  {r['status']}  {r.get('reason', '')}" for r in rows]))
        return 0
    registry = Registry.from_env()
    rows, code = [], 0
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        spec = registry.get(name)
        try:
            rows.append(export(spec, args.force) if args.command == "export" else check(spec))
        except ModelLoadError as exc:
            rows.append({"model": name, "status": "error", "reason": str(exc)})
            code = 1
    for r in rows:
        if not args.json:
            print(f"{r['model']}: {r['status']} {r.get('entry') or r.get('reason') or r.get('engine', '')}")
    if args.json:
        print(json.dumps(rows, indent=1))
    return code
