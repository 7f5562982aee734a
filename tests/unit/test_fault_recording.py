"""The fault suite's recording mechanism: figures reach results/<name>.json only when the
scenario passed; every run leaves an outcome (pass/fail, commit) that the report shows.
Checked by running pytest on small sample scenarios with tests/faults/conftest.py as plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks.provenance import git_commit
from tests.conftest import ROOT
from tests.faults.report import load, render

SAMPLE = '''
import pytest

@pytest.mark.scenario("s1_fails", "records, then an assertion fails")
def test_fails_after_recording(scenario):
    scenario.record(submitted=5, delivered=4, lost=1, duplicated=0, re_executed=0)
    assert False, "the scenario's assertion"

@pytest.mark.scenario("s2_passes", "records and passes")
def test_passes(scenario):
    scenario.record(submitted=3, delivered=3, lost=0, duplicated=0, re_executed=0)

@pytest.mark.scenario("s3_no_figures", "passes without recording")
def test_no_figures(scenario):
    pass
'''


def run_sample(tmp_path, results) -> str:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ELASTIQ_FAULTS_RESULTS": str(results)}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.faults.conftest", "-p", "no:cacheprovider",
                          "-o", "addopts=", "test_sample.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    return out.stdout


def test_a_failing_scenario_leaves_its_figures_untouched(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    before = json.dumps({"scenario": "s1_fails", "title": "last pass", "submitted": 5, "delivered": 5, "lost": 0,
                         "passed": True, "commit": "0123456789abcdef", "at": "2026-01-01T00:00:00Z"})
    (results / "s1_fails.json").write_text(before)

    summary = run_sample(tmp_path, results).strip().splitlines()[-1]
    assert summary.startswith("1 failed, 2 passed") and "1 error" in summary, summary   # s3 errors at teardown

    assert (results / "s1_fails.json").read_text() == before                       # untouched
    assert json.loads((results / "outcomes" / "s1_fails.json").read_text())["passed"] is False
    s2 = json.loads((results / "s2_passes.json").read_text())
    assert s2["passed"] is True and s2["delivered"] == 3 and s2["commit"] == git_commit()
    assert not (results / "s3_no_figures.json").exists()
    assert json.loads((results / "outcomes" / "s3_no_figures.json").read_text())["passed"] is False

    table = render(load(results))
    row = {line.split(":")[0].strip("| "): line for line in table.splitlines() if line.startswith("| s")}
    assert "**FAIL**" in row["s1_fails"] and "| 5 | 5 | 0 |" in row["s1_fails"] and "0123456789" in row["s1_fails"]
    assert "| pass |" in row["s2_passes"] and git_commit()[:10] in row["s2_passes"]
    assert "**FAIL**" in row["s3_no_figures"]
