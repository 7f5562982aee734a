"""CI=1, CI=yes (any set value but 0/false/no/off) behave like CI=true: the slow suites run
and a missing service fails instead of skipping. Checked by running pytest on a small test
file with tests/conftest.py as its plugin, once per value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, truthy

SAMPLE = '''
import pytest
from tests.conftest import require

@pytest.mark.slow
def test_slow_suite():
    pass

def test_needs_a_missing_service():
    require(False, "no such service")
'''


@pytest.mark.parametrize("value, on", [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True),
                                       ("woodpecker", True), ("", False), ("0", False), ("false", False),
                                       ("no", False), ("Off", False), (None, False)])
def test_truthy(value, on):
    assert truthy(value) is on


def run(tmp_path, **env) -> str:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "ELASTIQ_TEST_ALL")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                          "-o", "addopts=", "test_sample.py"], cwd=tmp_path, capture_output=True, text=True,
                         env={**base, "PYTHONPATH": str(ROOT), **env}, timeout=120)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_ci_values_run_everything_and_fail_on_missing_services(tmp_path, value):
    assert run(tmp_path, CI=value).startswith("1 failed, 1 passed")


@pytest.mark.parametrize("env", [{}, {"CI": "false"}, {"CI": "0"}])
def test_without_ci_slow_and_missing_services_skip(tmp_path, env):
    assert run(tmp_path, **env).startswith("2 skipped")


def test_elastiq_test_all_yes_runs_the_slow_suite(tmp_path):
    assert run(tmp_path, ELASTIQ_TEST_ALL="yes").startswith("1 passed, 1 skipped")
