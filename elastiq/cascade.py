"""The edge/cloud cascade, as pure arithmetic: accuracy and escalation at a threshold, and
the threshold chosen for a target.

The edge answers a text when its top probability is ``>= threshold``; every other text is
escalated to the cloud model. Given, per text, the edge's confidence and correctness and
the cloud's correctness, the cascade's accuracy and its escalated fraction at any
threshold follow exactly. :func:`choose_threshold` picks, on the **validation** split,
the threshold with the smallest escalation whose cascade accuracy is within
``target_drop`` of the cloud model alone (ties: the higher threshold). No numpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Point:
    threshold: float
    accuracy: float
    escalated: float


def point(threshold: float, confidence: Sequence[float], edge_ok: Sequence[bool],
          cloud_ok: Sequence[bool]) -> Point:
    n = len(confidence)
    if n == 0 or not (len(edge_ok) == len(cloud_ok) == n):
        raise ValueError("confidence, edge_ok and cloud_ok must be non-empty and the same length")
    local = [c >= threshold for c in confidence]
    right = sum(e if keep else c for keep, e, c in zip(local, edge_ok, cloud_ok))
    return Point(threshold, right / n, 1 - sum(local) / n)


def curve(confidence, edge_ok, cloud_ok) -> list[Point]:
    """Every distinct operating point: a threshold at each confidence value, plus 'all cloud'."""
    cuts = sorted(set(confidence)) + [float("inf")]
    return [point(t, confidence, edge_ok, cloud_ok) for t in cuts]


def choose_threshold(confidence, edge_ok, cloud_ok, target_drop: float) -> dict:
    """The least-escalating threshold with accuracy >= cloud - target_drop (always exists:
    escalating everything has the cloud's accuracy)."""
    cloud = sum(cloud_ok) / len(cloud_ok)
    points = curve(confidence, edge_ok, cloud_ok)
    ok = [p for p in points if p.accuracy >= cloud - target_drop - 1e-12]
    best = min(ok, key=lambda p: (p.escalated, -p.threshold))
    threshold = best.threshold if best.threshold != float("inf") else 1.01
    return {"threshold": threshold, "target": f"accuracy >= cloud - {target_drop} (validation)",
            "cloud_accuracy": cloud, "cascade_accuracy": best.accuracy, "escalated": best.escalated,
            "edge_accuracy": sum(edge_ok) / len(edge_ok), "n": len(confidence)}


def as_rows(points: list[Point]) -> list[dict]:
    return [asdict(p) for p in points]
