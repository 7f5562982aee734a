"""Predictive pre-warm (optional, off by default; part of the pure policy).

Demand surges (demand above the idle level, one per rise) are recorded in the policy's
state; when the last few came at a regular period, the last surge's peak of workers is
started ``prewarm_lead_factor`` x cold start ahead of the next. The simulator's held-out
traces show when it pays (docs/sim/README.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoscaler.policy import PolicyConfig, PolicyState


def track_surges(state: PolicyState, want: int, config: PolicyConfig, now: float) -> tuple[tuple, bool]:
    """Record when demand rises above the idle level (one surge per rise), keeping the last 8."""
    high = want > max(config.min_workers, 1)
    surges = state.surges
    if high and not state.in_surge:
        surges = (surges + ((now, min(want, config.max_workers)),))[-8:]
    return surges, high


def prewarm_target(surges: tuple, in_surge: bool, config: PolicyConfig, now: float,
                   cold_start_s: float | None) -> tuple[int, str] | None:
    """Workers to have ready for a surge predicted from a regular period, or None."""
    if not config.prewarm or in_surge or len(surges) < config.prewarm_min_surges:
        return None
    starts = [t for t, _ in surges[-config.prewarm_min_surges:]]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    period = sum(gaps) / len(gaps)
    if period <= 0 or any(abs(g - period) > config.prewarm_jitter * period for g in gaps):
        return None
    nxt = starts[-1] + period
    lead = config.prewarm_lead_factor * max(cold_start_s or 0.0, 1.0)
    if not nxt - lead <= now <= nxt + lead:
        return None
    peak = surges[-1][1]
    return peak, f"pre-warm: surges every {period:.0f}s, next expected in {nxt - now:.0f}s -> {peak}"
