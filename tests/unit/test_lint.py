"""The code stays lint-clean, and every lint exception says which rule and why."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("elastiq", "producer", "workers", "training", "autoscaler", "gateway", "benchmarks", "compose", "tests")
NOQA = re.compile(r"#\s*noqa\b(?P<rest>.*)$")
JUSTIFIED = re.compile(r"^:\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*\s+-\s+\S")


def python_files():
    for package in PACKAGES:
        yield from (ROOT / package).rglob("*.py")


def ruff() -> str | None:
    here = Path(sys.executable).parent / "ruff"
    return str(here) if here.exists() else shutil.which("ruff")


def test_ruff_check_is_clean():
    exe = ruff()
    require(exe is not None, "ruff is not installed (pip install -e '.[dev]')")
    out = subprocess.run([exe, "check", "--output-format", "concise", "."], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_noqa_names_its_rule_and_says_why():
    bare = []
    for path in python_files():
        with path.open() as f:
            comments = [t for t in tokenize.generate_tokens(f.readline) if t.type == tokenize.COMMENT]
        for token in comments:
            m = NOQA.search(token.string)
            if m and not JUSTIFIED.match(m.group("rest")):
                bare.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {token.string}")
    assert not bare, "a # noqa needs `# noqa: RULE - why`:\n" + "\n".join(bare)


def test_the_justification_check_can_fail():
    assert JUSTIFIED.match(": BLE001 - Redis away: try again")
    assert not JUSTIFIED.match(": BLE001")
    assert not JUSTIFIED.match("")
