"""How full Redis is (from INFO memory) and when the autoscaler warns: pure, clock passed in."""

from __future__ import annotations

from elastiq import redismemory
from elastiq.redismemory import FullnessWatch


class Info:
    def __init__(self, used, limit):
        self.mem = {"used_memory": used, "maxmemory": limit}

    def info(self, section):
        assert section == "memory"
        return self.mem


def test_memory_reads_the_fill_and_says_when_it_is_near_full():
    m = redismemory.memory(Info(850 * 2**20, 1000 * 2**20), 3600)
    assert m == {"used_mb": 850.0, "maxmemory_mb": 1000.0, "used_fraction": 0.85, "near_full": True,
                 "result_ttl_s": 3600}
    assert "85% full (850 of 1000 MB)" in redismemory.advice(m) and "ELASTIQ_RESULT_TTL_S" in redismemory.advice(m)
    assert redismemory.memory(Info(700 * 2**20, 1000 * 2**20))["near_full"] is False
    unlimited = redismemory.memory(Info(5 * 2**30, 0))
    assert unlimited["maxmemory_mb"] is None and unlimited["used_fraction"] is None and not unlimited["near_full"]


def test_the_watch_reads_every_30_s():
    w = FullnessWatch()
    assert w.due(100.0) and not w.due(110.0) and not w.due(129.9) and w.due(130.0)


def test_the_watch_warns_once_on_crossing_and_once_when_clear_again():
    w = FullnessWatch()
    seen = [w.update(f) for f in (0.5, 0.79, 0.81, 0.9, 0.75, 0.82, 0.69, 0.5, 0.8, None)]
    assert seen == [None, None, "full", None, None, None, "clear", None, "full", None]
