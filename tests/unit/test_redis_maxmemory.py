"""The local Redis's maxmemory: an explicit setting, else half the host (pure, on files and env dicts)."""

from __future__ import annotations

import pytest

from elastiq.errors import ConfigError
from elastiq.local import procs


@pytest.fixture
def meminfo(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       24683828 kB\nMemFree:        23510200 kB\n")
    return path


def test_half_the_host_by_default(meminfo):
    assert procs.redis_maxmemory_mb({}, meminfo) == 24683828 // 1024 // 2


def test_an_explicit_setting_wins_and_zero_means_no_limit(meminfo):
    assert procs.redis_maxmemory_mb({procs.MAXMEMORY_ENV: "512"}, meminfo) == 512
    assert procs.redis_maxmemory_mb({procs.MAXMEMORY_ENV: "0"}, meminfo) is None


@pytest.mark.parametrize("bad", ["-1", "1.5", "2gb", "lots"])
def test_a_bad_setting_is_a_config_error(meminfo, bad):
    with pytest.raises(ConfigError, match="ELASTIQ_REDIS_MAXMEMORY_MB"):
        procs.redis_maxmemory_mb({procs.MAXMEMORY_ENV: bad}, meminfo)


def test_no_limit_when_the_host_memory_cannot_be_read(tmp_path):
    assert procs.redis_maxmemory_mb({}, tmp_path / "missing") is None
    (tmp_path / "odd").write_text("nothing useful\n")
    assert procs.redis_maxmemory_mb({}, tmp_path / "odd") is None


def test_redis_is_started_with_it(monkeypatch, tmp_path):
    monkeypatch.setattr(procs.shutil, "which", lambda name: "/usr/bin/redis-server")
    args = procs.RedisProcess(6399, tmp_path, maxmemory_mb=768).args()
    assert args[args.index("--maxmemory") + 1] == "768mb"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert "--maxmemory" not in procs.RedisProcess(6399, tmp_path, maxmemory_mb=None).args()
