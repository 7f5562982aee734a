"""The Makefile's set-up step, with PATH arranged so that redis-server is not found.

Shims stand in for ``id`` (root or not) and ``apt-get`` (records how it was called and,
on install, puts a stand-in redis-server on the PATH): a unit test of the Makefile's
logic, not of apt. ``make`` itself and ``/bin/sh`` are the real ones.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from tests.conftest import ROOT, require

MAKE = shutil.which("make")


def shim(path, text: str) -> None:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def bin_dir(tmp_path):
    require(MAKE is not None, "make is not installed")
    d = tmp_path / "bin"
    d.mkdir()
    return d


def make(bin_dir, *targets, uid=0, apt="ok", redis=False, venv=None):
    """Run make with only ``bin_dir`` on the PATH; returns (returncode, output, apt-get calls)."""
    log = bin_dir.parent / "apt.log"
    shim(bin_dir / "id", f'[ "$1" = "-u" ] && echo {uid}\n')
    if apt is not None:
        install = {"ok": f'printf "#!/bin/sh\\necho fake\\n" > {bin_dir}/redis-server; '
                         f'/bin/chmod +x {bin_dir}/redis-server',
                   "fail": "exit 100", "noop": "true"}[apt]
        shim(bin_dir / "apt-get", f'echo "apt-get $*" >> {log}\n'
                                  f'case "$*" in *install*) {install} ;; esac\n')
    if redis:
        shim(bin_dir / "redis-server", "echo fake\n")
    args = [MAKE, "--no-print-directory", "-C", str(ROOT), *targets]
    if venv:
        args.append(f"VENV={venv}")
    p = subprocess.run(args, env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/tmp")},
                       capture_output=True, text=True, timeout=60, check=False)
    calls = log.read_text().splitlines() if log.exists() else []
    return p.returncode, p.stdout + p.stderr, calls


def test_root_with_apt_installs_redis(bin_dir):
    rc, out, calls = make(bin_dir, "ensure-redis")
    assert rc == 0, out
    assert calls == ["apt-get update -qq", "apt-get install -y -qq redis-server"]
    assert "installing it" in out


def test_not_root_stops_with_the_exact_command(bin_dir):
    rc, out, calls = make(bin_dir, "ensure-redis", uid=1000)
    assert rc != 0 and calls == []
    assert "sudo apt-get update && sudo apt-get install -y redis-server" in out


def test_no_apt_stops_with_advice(bin_dir):
    rc, out, calls = make(bin_dir, "ensure-redis", apt=None)
    assert rc != 0 and "redis-server is missing" in out and "brew install redis" in out


def test_a_failed_or_empty_install_stops(bin_dir):
    rc, out, _ = make(bin_dir, "ensure-redis", apt="fail")
    assert rc != 0 and "installing redis-server failed" in out
    rc, out, _ = make(bin_dir, "ensure-redis", apt="noop")      # apt "succeeds" but nothing on PATH
    assert rc != 0 and "installing redis-server failed" in out


def test_present_redis_is_left_alone(bin_dir):
    rc, out, calls = make(bin_dir, "ensure-redis", redis=True)
    assert rc == 0 and calls == [] and out.strip() == ""


@pytest.mark.parametrize("target", ["demo", "test", "test-all"])
def test_demo_and_test_set_up_redis_first(bin_dir, tmp_path, target):
    venv = tmp_path / "venv"
    rc, out, calls = make(bin_dir, target, uid=1000, venv=venv)
    assert rc != 0 and "sudo apt-get" in out
    assert not venv.exists()                      # stopped before anything else was done
    rc, out, calls = make(bin_dir, target, venv=venv)     # root: installs, then goes on to the venv
    assert calls[-1] == "apt-get install -y -qq redis-server"
    assert "-m venv" in out                       # (no python3 on this PATH, so it stops there)
