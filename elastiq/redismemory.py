"""How full Redis is, and a warning as it nears ``maxmemory``.

Answers stay ``ELASTIQ_RESULT_TTL_S`` (an hour) at ~5.5 KB per MiniLM job (`elastiq bench
sustained`). Redis runs with ``maxmemory`` and ``noeviction``: at the limit it refuses
writes, so new jobs get ``BrokerFullError``. ``elastiq status`` shows the fill; the
autoscaler's loop logs a warning when it crosses ``NEAR_FULL`` (and once more when it
falls back under ``CLEAR``), through :class:`FullnessWatch` -- pure, the clock passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

NEAR_FULL = 0.8         # of maxmemory: warn from here
CLEAR = 0.7             # ... and say so again once it is back under this


def memory(r, result_ttl_s: int | None = None) -> dict:
    """Used memory, ``maxmemory`` (None: no limit) and how full, from ``INFO memory``."""
    mem = r.info("memory")
    used, limit = int(mem["used_memory"]), int(mem.get("maxmemory") or 0)
    fraction = round(used / limit, 3) if limit else None
    return {"used_mb": round(used / 2**20, 1), "maxmemory_mb": round(limit / 2**20, 1) if limit else None,
            "used_fraction": fraction, "near_full": fraction is not None and fraction >= NEAR_FULL,
            "result_ttl_s": result_ttl_s}


def advice(m: dict) -> str:
    return (f"Redis is {m['used_fraction']:.0%} full ({m['used_mb']:.0f} of {m['maxmemory_mb']:.0f} MB): "
            "at maxmemory it refuses new jobs (BrokerFullError). Shorten ELASTIQ_RESULT_TTL_S, "
            "fetch answers sooner, or raise maxmemory.")


@dataclass
class FullnessWatch:
    """When to read Redis's memory (every ``every_s``), and whether a reading crosses a line."""

    every_s: float = 30.0
    next_at: float = 0.0
    warned: bool = False

    def due(self, now: float) -> bool:
        if now < self.next_at:
            return False
        self.next_at = now + self.every_s
        return True

    def update(self, fraction: float | None) -> str | None:
        """``"full"`` on crossing ``NEAR_FULL``, ``"clear"`` on falling under ``CLEAR`` after
        that, else None (no repeat while it stays on one side)."""
        if fraction is None:
            return None
        if not self.warned and fraction >= NEAR_FULL:
            self.warned = True
            return "full"
        if self.warned and fraction < CLEAR:
            self.warned = False
            return "clear"
        return None
