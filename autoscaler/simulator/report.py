"""Numbers that compare runs: cost, queue wait, SLO misses and how jumpy the pool was."""

from __future__ import annotations

import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from autoscaler.simulator.model import SimResult


@dataclass(frozen=True)
class Summary:
    policy: str
    trace: str
    jobs: int
    completed: int
    worker_seconds: float
    wait_p50_s: float
    wait_p95_s: float
    wait_p99_s: float
    wait_max_s: float
    over_slo: int            # jobs that waited longer than slo_wait_s
    scale_events: int        # decisions that changed the pool size
    direction_changes: int   # up after down or down after up
    max_workers_seen: int
    horizon_s: float
    latency_p95_s: float | None = None   # queue wait + slot time: a slowed-down job shows here

    def as_dict(self) -> dict:
        return asdict(self)


def direction_changes(events: list[tuple[float, int, int]]) -> int:
    signs = [1 if to > frm else -1 for _, frm, to in events if to != frm]
    return sum(1 for a, b in zip(signs, signs[1:]) if a != b)


def summarise(r: SimResult) -> Summary:
    waits = r.waits[~np.isnan(r.waits)]
    pct = (lambda q: float(np.percentile(waits, q))) if len(waits) else (lambda q: 0.0)
    return Summary(
        policy=r.policy, trace=r.trace, jobs=int(len(r.waits)), completed=int(len(waits)),
        worker_seconds=round(float(r.worker_seconds), 1), wait_p50_s=round(pct(50), 3),
        wait_p95_s=round(pct(95), 3), wait_p99_s=round(pct(99), 3),
        wait_max_s=round(float(waits.max()) if len(waits) else 0.0, 3),
        over_slo=int(np.sum(waits > r.params.slo_wait_s)), scale_events=len(r.events),
        direction_changes=direction_changes(r.events),
        max_workers_seen=int(r.workers.max()) if len(r.workers) else 0, horizon_s=round(float(r.horizon_s), 1),
        latency_p95_s=_latency_p95(r))


def _latency_p95(r: SimResult) -> float | None:
    if r.holds is None:
        return None
    lat = (r.waits + r.holds)[~np.isnan(r.waits)]
    return round(float(np.percentile(lat, 95)), 3) if len(lat) else None


COLUMNS = [("policy", "policy", "{}"), ("worker_seconds", "worker-s", "{:.0f}"),
           ("wait_p50_s", "p50 wait s", "{:.3f}"), ("wait_p95_s", "p95 wait s", "{:.3f}"),
           ("wait_p99_s", "p99 wait s", "{:.3f}"), ("latency_p95_s", "p95 latency s", "{:.3f}"),
           ("over_slo", "over SLO", "{}"),
           ("scale_events", "scale events", "{}"), ("direction_changes", "dir changes", "{}"),
           ("max_workers_seen", "max workers", "{}")]


def table(summaries: list[Summary]) -> str:
    """A fixed-width text table, one row per policy."""
    head = [h for _, h, _ in COLUMNS]
    rows = [[fmt.format(getattr(s, k)) for k, _, fmt in COLUMNS] for s in summaries]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def provenance(argv: list[str] | None = None) -> dict:
    """The git commit (and whether the code had uncommitted changes), the time and the command of a run."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    # the code's state: reports and figures under docs/ being rewritten do not make a run "dirty"
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status),
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "elastiq simulate " + " ".join(argv or [])}
