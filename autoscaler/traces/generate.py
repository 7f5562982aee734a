"""Write the built-in traces: ``python -m autoscaler.traces.generate [--out DIR]``.

Each trace is a non-homogeneous Poisson process (counts per 0.1 s bin drawn from a fixed
seed, times uniform inside the bin), one sentence per job. Rates are in jobs/s and are
chosen against the simulator's default worker (about 110 jobs/s with 16 slots, measured on
this machine) and a pool of at most 4 workers (440 jobs/s):

- ``steady``:  150 jobs/s for 600 s (about 1.4 workers of work);
- ``step``:    30 jobs/s, a 120 s step to 380 jobs/s at t=120 s, back to 30 until 600 s;
- ``diurnal``: a sine between 10 and 290 jobs/s, one 600 s period ("a day"), 900 s long
               with the last 300 s at the trough;
- ``spiky``:   10 jobs/s with a 20 s burst of 400 jobs/s every 120 s, 720 s.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np

from autoscaler.traces import HERE, Trace, builtin_path, make_trace, save

BIN_S = 0.1


def poisson(name: str, rate: Callable[[np.ndarray], np.ndarray], duration_s: float, seed: int) -> Trace:
    """Arrivals of a Poisson process with time-varying ``rate(t)`` (jobs/s), deterministic."""
    rng = np.random.default_rng(seed)
    starts = np.arange(0.0, duration_s, BIN_S)
    counts = rng.poisson(np.maximum(rate(starts + BIN_S / 2), 0.0) * BIN_S)
    t = np.repeat(starts, counts) + rng.uniform(0.0, BIN_S, int(counts.sum()))
    return make_trace(name, np.round(np.sort(t), 3), duration_s=duration_s)


def steady(t: np.ndarray) -> np.ndarray:
    return np.full_like(t, 150.0)


def step(t: np.ndarray) -> np.ndarray:
    return np.where((t >= 120) & (t < 240), 380.0, 30.0)


def diurnal(t: np.ndarray) -> np.ndarray:
    day = 150.0 - 140.0 * np.cos(2 * np.pi * np.minimum(t, 600.0) / 600.0)
    return np.where(t < 600.0, day, 10.0)


def spiky(t: np.ndarray) -> np.ndarray:
    return np.where((t % 120.0) >= 100.0, 400.0, 10.0)


SPECS = {
    "steady": (steady, 600.0, 1),
    "step": (step, 600.0, 2),
    "diurnal": (diurnal, 900.0, 3),
    "spiky": (spiky, 720.0, 4),
}


def build(name: str) -> Trace:
    rate, duration, seed = SPECS[name]
    return poisson(name, rate, duration, seed)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args(argv)
    for name in SPECS:
        path = save(build(name), args.out / builtin_path(name).name)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
