"""Shape rules for the package code: short functions (one screen, one job each)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("elastiq", "producer", "workers", "training", "gateway", "autoscaler", "benchmarks", "compose")
MAX_FUNCTION_LINES = 50


def long_functions(paths, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    out = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    return out


def test_no_function_over_fifty_lines():
    found = long_functions(p for top in PACKAGES for p in (ROOT / top).rglob("*.py"))
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


def test_the_rule_can_fail(tmp_path):
    probe = ROOT / "elastiq" / "_shape_probe.py"
    assert not probe.exists()
    probe.write_text("def f():\n" + "    x = 1\n" * 50)
    try:
        assert long_functions([probe]) == ["elastiq/_shape_probe.py:1 f: 51 lines"]
    finally:
        probe.unlink()
