"""Is the simulator honest? Replay a recorded live run and compare the curves.

:func:`compare_to_timeline` reads a timeline written by ``elastiq autoscale --timeline``,
derives the arrivals from it (:mod:`autoscaler.traces.timeline`), replays them through
the simulator with the real elastiq policy, and compares, at the recorded times:

- the replica curve: recorded ``current`` against the simulated pool (workers not
  draining), as mean/max absolute difference and worker-seconds of each curve;
- the queue: recorded ``waiting`` and ``oldest_age_s`` against the simulated ones
  (means, p95 of the oldest job's age, and their differences).

Small differences say the simulator's worker model (cold start, throughput, slots) fits
the machine; large ones say which parameter to re-measure.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from autoscaler.policy import PolicyConfig
from autoscaler.simulator.model import SimParams, simulate
from autoscaler.simulator.policies import ElastiqPolicy
from autoscaler.timeline import read_timeline
from autoscaler.traces.timeline import arrivals_from_timeline


def _step_integral(t: np.ndarray, v: np.ndarray) -> float:
    return float(np.sum(np.diff(t) * v[:-1])) if len(t) > 1 else 0.0


def _values(rows: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows])


def _p95(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return round(float(np.percentile(x, 95)), 3) if len(x) else None


def _mean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return round(float(x.mean()), 3) if len(x) else None


def compare_to_timeline(timeline_path: str | Path, queue: str | None = None,
                        params: SimParams | None = None, config: PolicyConfig | None = None) -> dict:
    """Replay a recorded timeline through the simulator and return the differences."""
    rows = [r for r in read_timeline(Path(timeline_path)) if r.get("t") is not None]
    if queue is None and rows:
        queue = rows[0].get("queue")
    rows = sorted((r for r in rows if r.get("queue") == queue and r.get("current") is not None),
                  key=lambda r: r["t"])
    if len(rows) < 2:
        raise ValueError(f"{timeline_path}: need at least two decisions for queue {queue!r}")
    trace = arrivals_from_timeline(rows, name=Path(timeline_path).stem, queue=queue)
    params = params or SimParams()
    if config is not None:
        params = replace(params, min_workers=config.min_workers, max_workers=config.max_workers)
    policy = ElastiqPolicy.for_params(params, config)
    policy.initial = int(rows[0]["current"])
    result = simulate(trace, policy, params)

    t = np.array([r["t"] for r in rows], dtype=float) - rows[0]["t"]
    idx = np.clip(np.searchsorted(result.t, t, side="right") - 1, 0, len(result.t) - 1)
    sim_workers, rec_workers = result.workers[idx], _values(rows, "current")
    sim_waiting, rec_waiting = result.waiting[idx], _values(rows, "waiting")
    sim_oldest, rec_oldest = result.oldest[idx], _values(rows, "oldest_age_s")
    diff = np.abs(sim_workers - rec_workers)
    ws_rec, ws_sim = _step_integral(t, rec_workers), _step_integral(t, sim_workers)
    return {
        "timeline": str(timeline_path), "queue": queue, "rows": len(rows),
        "duration_s": round(float(t[-1]), 1), "jobs_derived": trace.jobs,
        "replicas": {
            "mean_abs_diff": round(float(diff.mean()), 3), "max_abs_diff": int(diff.max()),
            "worker_seconds_recorded": round(ws_rec, 1), "worker_seconds_sim": round(ws_sim, 1),
            "worker_seconds_ratio": round(ws_sim / ws_rec, 3) if ws_rec else None,
            "max_recorded": int(np.nanmax(rec_workers)), "max_sim": int(sim_workers.max()),
        },
        "queue_wait": {
            "waiting_mean_recorded": _mean(rec_waiting), "waiting_mean_sim": _mean(sim_waiting),
            "waiting_mean_abs_diff": _mean(np.abs(sim_waiting - rec_waiting)),
            "oldest_age_p95_recorded_s": _p95(rec_oldest), "oldest_age_p95_sim_s": _p95(sim_oldest),
            "oldest_age_mean_abs_diff_s": _mean(np.abs(sim_oldest - rec_oldest)),
            "sim_job_wait_p95_s": _p95(result.waits),
        },
    }
