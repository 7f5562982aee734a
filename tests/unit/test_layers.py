"""The import graph follows the layers, written down once here.

    benchmarks                      measure anything below
    elastiq.cli                     the `elastiq` command: dispatches to every part
    autoscaler.simulator.live       records a live trace on a local stack it starts
    elastiq.local                   the local stack: up/down/status/demo, flower
    autoscaler  gateway             the parts; the gateway submits through the producer,
    workers     producer              the autoscaler's live replay too
    training                        fine-tuning (torch), run by train workers
    workers.engines                 export, parity, onnx/torch engines (the engine CLI is a worker part)
    elastiq.local.procs             process plumbing: start redis-server / workers
    elastiq                         the contract floor: names, messages, settings, errors

A module may import its own group and the groups its row in ``ALLOWED`` names; anything
else -- an upward import, or a part reaching into another part -- fails, with the line.
Imports inside functions count too (they hide cycles, they do not remove them).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# group -> module prefixes (the longest matching prefix wins)
GROUPS = {
    "floor": ["elastiq"],
    "procs": ["elastiq.local.procs"],
    "producer": ["producer"],
    "workers": ["workers", "workers.engines.cli"],
    "engines": ["workers.engines"],
    "training": ["training"],
    "gateway": ["gateway"],
    "autoscaler": ["autoscaler"],
    "local": ["elastiq.local"],
    "cli": ["elastiq.cli"],
    "live": ["autoscaler.simulator.live"],
    "benchmarks": ["benchmarks"],
}
ALLOWED = {
    "floor": set(),
    "procs": {"floor"},
    "producer": {"floor"},
    "engines": {"floor"},
    "training": {"floor", "engines"},
    "workers": {"floor", "engines", "training"},
    "gateway": {"floor", "producer"},
    "autoscaler": {"floor", "procs", "producer"},
    "local": {"floor", "procs", "producer", "autoscaler"},
    "live": {"floor", "procs", "producer", "autoscaler", "local"},
    "cli": {"floor", "local"},
    "benchmarks": {"floor", "procs", "producer", "workers", "engines", "training", "gateway", "autoscaler",
                   "local", "live"},
}
PREFIXES = sorted(((p, g) for g, ps in GROUPS.items() for p in ps), key=lambda x: -len(x[0]))


def group_of(module: str) -> str | None:
    for prefix, group in PREFIXES:
        if module == prefix or module.startswith(prefix + "."):
            return group
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imports(path: Path):
    """(line, imported module) for every import in the file, relative ones resolved."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield node.lineno, full if is_module(full) else base


def violations(paths) -> list[str]:
    out = []
    for path in paths:
        source = group_of(module_name(path))
        for line, target in imports(path):
            dest = group_of(target)
            if source is None or dest is None or dest == source:
                continue
            if dest not in ALLOWED[source]:
                out.append(f"{path.relative_to(ROOT)}:{line}: {source} -> {dest} ({target})")
    return out


def package_files():
    for top in ("elastiq", "producer", "workers", "training", "gateway", "autoscaler", "benchmarks"):
        yield from (ROOT / top).rglob("*.py")


def test_no_import_against_the_layers():
    found = violations(package_files())
    assert not found, "imports against the layers in this file's docstring:\n" + "\n".join(found)


def test_the_floor_imports_nothing_of_the_project_above_it():
    floor = [p for p in (ROOT / "elastiq").rglob("*.py") if group_of(module_name(p)) == "floor"]
    assert {module_name(p) for p in floor} >= {"elastiq.contract", "elastiq.messages", "elastiq.settings"}
    for path in floor:
        for _, target in imports(path):
            assert group_of(target) in (None, "floor"), f"{path.relative_to(ROOT)} imports {target}"


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The old shape (the floor's launcher importing the autoscaler) would fail."""
    fake = ROOT / "elastiq" / "_layer_probe.py"
    assert not fake.exists()
    fake.write_text("def f():\n    from autoscaler.backends.process import ProcessBackend\n")
    try:
        assert violations([fake]) == ["elastiq/_layer_probe.py:2: floor -> autoscaler (autoscaler.backends.process)"]
    finally:
        fake.unlink()
    assert group_of("elastiq.local.procs") == "procs" and group_of("elastiq.local.demo") == "local"
    assert group_of("elastiq.contract") == "floor" and group_of("celery") is None
