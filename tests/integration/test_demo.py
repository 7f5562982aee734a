"""`make demo` end to end, smaller: the report, the search, the scale-in and the PNG."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_and_writes_the_timeline(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIQ_")}
    env.update(ELASTIQ_HOME=str(tmp_path / "demo"), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "elastiq.cli", "demo", "--jobs", "600"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "600 results, 600 of 600 stored by the workers in Redis" in text
    assert "queue wait  p50" in text and "end to end  p50" in text
    assert "'pets and animals'" in text
    png = tmp_path / "demo" / "timeline.png"
    assert png.exists() and png.stat().st_size > 10_000
    assert "stack stopped" in text
