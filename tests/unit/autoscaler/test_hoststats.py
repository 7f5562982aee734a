"""Idle CPU is measured between readings at least ``min_interval_s`` apart (clock injected;
psutil stubbed: this is the reader's arithmetic, not the host)."""

from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace

from autoscaler.hoststats import HostStats

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


class FakePsutil:
    """Cumulative CPU times; ``busy(share, seconds)`` advances them as a host at that load."""

    def __init__(self):
        self.t = Times(*([0.0] * 10))
        self.calls = 0

    def busy(self, share, seconds=1.0):
        cpu_s = 2 * seconds
        t = self.t
        self.t = t._replace(user=t.user + cpu_s * share * 0.8, system=t.system + cpu_s * share * 0.2,
                            idle=t.idle + cpu_s * (1 - share) * 0.9, iowait=t.iowait + cpu_s * (1 - share) * 0.1)

    def cpu_count(self):
        return 2

    def cpu_times(self):
        self.calls += 1
        return self.t

    def virtual_memory(self):
        return SimpleNamespace(available=8_000e6)


def test_first_reading_has_no_idle_cpu_then_measures():
    ps, t = FakePsutil(), [0.0]
    stats = HostStats(clock=lambda: t[0], psutil=ps)
    assert stats() == {"cpus": 2, "free_cpu": None, "free_memory_mb": 8000.0}
    ps.busy(0.75)
    t[0] = 1.0
    assert stats()["free_cpu"] == 0.5


def test_a_reading_too_soon_repeats_the_last_measurement():
    ps, t = FakePsutil(), [0.0]
    stats = HostStats(clock=lambda: t[0], psutil=ps, min_interval_s=0.5)
    stats()
    ps.busy(1.0)
    t[0] = 1.0
    assert stats()["free_cpu"] == 0.0
    # 10 ms later the host happens to idle: too short to measure, the last measurement stands
    ps.busy(0.0, 0.01)
    t[0] = 1.01
    assert stats()["free_cpu"] == 0.0 and ps.calls == 2
    ps.busy(0.0, 0.6)
    t[0] = 1.61
    assert stats()["free_cpu"] == 2.0 and ps.calls == 3


def test_no_time_passed_is_unknown():
    ps, t = FakePsutil(), [0.0]
    stats = HostStats(clock=lambda: t[0], psutil=ps)
    stats()
    t[0] = 1.0          # the clock moved, the CPU counters did not
    assert stats()["free_cpu"] is None


def test_unreadable_host_is_unknown_not_zero():
    class Broken(FakePsutil):
        def cpu_count(self):
            raise OSError("no /proc")

    assert HostStats(psutil=Broken())() == {}
