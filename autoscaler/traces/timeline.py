"""Arrivals derived from a timeline recorded by ``elastiq autoscale --timeline``.

A timeline row (one per queue per tick) has ``t``, ``queue``, ``waiting``, ``in_flight``,
``current``, ``desired`` and, when the controller measured it, ``arrival_rate`` (jobs/s,
smoothed) and ``service_time_s``. It does not list jobs, so arrivals are estimated per
interval between two rows of the same queue, in this order of preference:

1. ``arrival_rate`` of the later row x interval (the controller's own estimate);
2. otherwise a flow balance: growth of (waiting + in flight) plus the jobs that must have
   completed, estimated as in-flight x interval / service time (``service_time_s`` of the
   row, else ``default_service_time_s``).

Counts are rounded with a carry (so fractions are not lost) and spread evenly over the
interval; rows with unknown (null) values contribute no arrivals. Only the first queue
is used unless ``queue`` is given. The result is an estimate: good for the shape of the
load, not for exact job counts.
"""

from __future__ import annotations

import numpy as np

from autoscaler.traces import Trace, make_trace

DEFAULT_SERVICE_TIME_S = 16 / 110   # one slot of the default simulated worker


def arrivals_from_timeline(rows: list[dict], name: str = "timeline", queue: str | None = None,
                           default_service_time_s: float = DEFAULT_SERVICE_TIME_S) -> Trace:
    rows = [r for r in rows if r.get("t") is not None]
    if queue is None and rows:
        queue = rows[0].get("queue")
    rows = sorted((r for r in rows if r.get("queue") == queue), key=lambda r: r["t"])
    if not rows:
        return make_trace(name, [], duration_s=0.0)
    t0 = rows[0]["t"]
    times: list[np.ndarray] = []
    carry = 0.0
    for prev, row in zip(rows, rows[1:]):
        dt = row["t"] - prev["t"]
        if dt <= 0:
            continue
        expected = _expected_arrivals(prev, row, dt, default_service_time_s)
        if expected is None:
            continue
        carry += expected
        n = int(carry)
        carry -= n
        if n:
            start = prev["t"] - t0
            times.append(start + (np.arange(n) + 0.5) * dt / n)
    t = np.concatenate(times) if times else np.array([])
    return make_trace(name, np.round(t, 3), duration_s=rows[-1]["t"] - t0)


def _expected_arrivals(prev: dict, row: dict, dt: float, default_service: float) -> float | None:
    if row.get("arrival_rate") is not None:
        return max(0.0, float(row["arrival_rate"]) * dt)
    keys = ("waiting", "in_flight")
    if any(prev.get(k) is None or row.get(k) is None for k in keys):
        return None
    growth = (row["waiting"] + row["in_flight"]) - (prev["waiting"] + prev["in_flight"])
    service = row.get("service_time_s") or default_service
    done = prev["in_flight"] * dt / service
    return max(0.0, growth + done)
