"""Is the simulator honest? Replay a recorded live run and compare the curves.

:func:`compare_to_timeline` reads a timeline written by ``elastiq autoscale --timeline``,
replays the run's arrivals through the simulator with the real elastiq policy, and
compares, at the recorded times:

- the replica curve: recorded ``current`` against the simulated pool (workers not
  draining), as mean/max absolute difference; worker-seconds of each run (recorded:
  pool kept + draining over the rows, :func:`workers_alive`; simulated: every worker from start to stop);
- the queue: recorded ``waiting`` and ``oldest_age_s`` against the simulated ones;
- with the live jobs' own waits (``live_waits``, from a recording), the p95 job wait of
  each run.

The arrivals are the recording's exact submit times when given (``trace``, from
``elastiq simulate record``), else derived from the timeline
(:mod:`autoscaler.traces.timeline`: an estimate). Small differences say the simulator's
machine model fits the machine; large ones say which measurement to redo.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from autoscaler.policy import PolicyConfig
from autoscaler.simulator.model import SimParams, SimResult, simulate
from autoscaler.simulator.policies import ElastiqPolicy
from autoscaler.timeline import read_timeline
from autoscaler.traces import Trace
from autoscaler.traces.timeline import arrivals_from_timeline

# issue #19: the live run and its replay agree within these
WORKER_SECONDS_TOLERANCE = 0.15
P95_WAIT_TOLERANCE = 0.25


def _step_integral(t: np.ndarray, v: np.ndarray) -> float:
    return float(np.sum(np.diff(t) * v[:-1])) if len(t) > 1 else 0.0


def _values(rows: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows])


def _p95(x) -> float | None:
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    return round(float(np.percentile(x, 95)), 3) if len(x) else None


def _mean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return round(float(x.mean()), 3) if len(x) else None


def _within(sim: float | None, live: float | None, tolerance: float) -> dict:
    if sim is None or live is None:
        return {"ratio": None, "ok": None}
    ratio = sim / live if live else (1.0 if sim == live else None)
    return {"ratio": None if ratio is None else round(ratio, 3),
            "ok": ratio is not None and abs(ratio - 1.0) <= tolerance}


def queue_rows(rows: list[dict], queue: str | None = None) -> tuple[str | None, list[dict]]:
    """The decision rows of one queue (the first one seen by default), in time order."""
    rows = [r for r in rows if r.get("t") is not None]
    if queue is None and rows:
        queue = rows[0].get("queue")
    return queue, sorted((r for r in rows if r.get("queue") == queue and r.get("current") is not None),
                         key=lambda r: r["t"])


def workers_alive(rows: list[dict]) -> np.ndarray:
    """Worker processes alive after each recorded decision: the pool it keeps, plus the ones
    still draining. A scale-in row's ``current`` is the pool before it and its ``draining``
    already holds the worker it just drained: ``current + draining`` counted that one twice."""
    return np.array([min(r.get("current") or 0, r.get("desired", r.get("current")) or 0) + (r.get("draining") or 0)
                     for r in rows], dtype=float)


def replay(rows: list[dict], trace: Trace, params: SimParams, config: PolicyConfig | None = None) -> SimResult:
    """The elastiq policy on ``trace``, starting with the recorded pool (warm)."""
    if config is not None:
        params = replace(params, min_workers=config.min_workers, max_workers=config.max_workers)
    policy = ElastiqPolicy.for_params(params, config)
    policy.initial = int(rows[0]["current"])
    return simulate(trace, policy, params)


def compare(rows: list[dict], result: SimResult, live_waits=None) -> dict:
    """Recorded rows against the simulated run (times in ``rows`` are absolute; t=0 is the first row)."""
    t = np.array([r["t"] for r in rows], dtype=float) - rows[0]["t"]
    idx = np.clip(np.searchsorted(result.t, t, side="right") - 1, 0, len(result.t) - 1)
    sim_workers, rec_workers = result.workers[idx], _values(rows, "current")
    sim_waiting, rec_waiting = result.waiting[idx], _values(rows, "waiting")
    sim_oldest, rec_oldest = result.oldest[idx], _values(rows, "oldest_age_s")
    diff = np.abs(sim_workers - rec_workers)
    ws_rec = _step_integral(t, workers_alive(rows))
    ws_sim = float(result.worker_seconds)
    out = {
        "rows": len(rows), "duration_s": round(float(t[-1]), 1), "jobs": int(len(result.waits)),
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
    checks = {"worker_seconds": {**_within(ws_sim, ws_rec, WORKER_SECONDS_TOLERANCE),
                                 "tolerance": WORKER_SECONDS_TOLERANCE}}
    if live_waits is not None:
        out["queue_wait"]["live_job_wait_p95_s"] = _p95(live_waits)
        checks["p95_wait"] = {**_within(_p95(result.waits), _p95(live_waits), P95_WAIT_TOLERANCE),
                              "tolerance": P95_WAIT_TOLERANCE}
    out["fidelity"] = checks
    return out


def compare_to_timeline(timeline_path: str | Path, queue: str | None = None,
                        params: SimParams | None = None, config: PolicyConfig | None = None,
                        trace: Trace | None = None, live_waits=None) -> dict:
    """Replay a recorded timeline through the simulator and return the differences."""
    queue, rows = queue_rows([r.to_dict() for r in read_timeline(Path(timeline_path))], queue)
    if len(rows) < 2:
        raise ValueError(f"{timeline_path}: need at least two decisions for queue {queue!r}")
    if trace is None:
        trace = arrivals_from_timeline(rows, name=Path(timeline_path).stem, queue=queue)
    result = replay(rows, trace, params or SimParams(), config)
    return {"timeline": str(timeline_path), "queue": queue, "jobs_derived": trace.jobs,
            **compare(rows, result, live_waits)}
