"""Write the built-in traces: ``python -m autoscaler.traces.generate [--out DIR] [--scale X]``.

Each trace is a non-homogeneous Poisson process (counts per 0.1 s bin drawn from a fixed
seed, times uniform inside the bin), one sentence per job unless said otherwise.

**Rates scale with the machine.** The rates below were sized against a reference worker
serving ``REFERENCE_JOBS_PER_S`` (124 jobs/s: the torch-engine calibration the shapes were
written for). The stored files multiply every rate by ``--scale``, by default the
calibrated worker's rate over that reference (``docs/sim/calibration``: 355 / 124 = 2.86 at
33fc26d, onnx engine), so each shape still asks for the same number of workers -- a trace
sized for a slow engine would need one worker of a fast one and test nothing.

**Development set** (the policy's defaults were tuned on these; jobs/s chosen against an
idealised 110 jobs/s worker and a pool of at most 4, 440 jobs/s -- on this 2-core host,
which serves ~200 jobs/s however many workers run, their peaks are overloads):

- ``steady``:  150 jobs/s for 600 s;
- ``step``:    30 jobs/s, a 120 s step to 380 jobs/s at t=120 s, back to 30 until 600 s;
- ``diurnal``: a sine between 10 and 290 jobs/s, one 600 s period ("a day"), 900 s long
               with the last 300 s at the trough;
- ``spiky``:   10 jobs/s with a 20 s burst of 400 jobs/s every 120 s, 720 s.

**Held-out set** (never used to tune the policy; other seeds and shapes, sized against
this host's measured capacity -- peaks at 85-95 % of what two workers serve):

- ``sawtooth``: ramps from 20 to 180 jobs/s over 90 s, drops back, 8 times (720 s);
- ``flash``:    a flash crowd on a low base: 5 jobs/s, at t=150 s a jump to 190 jobs/s
                that decays back (time constant 60 s), 600 s;
- ``ramp``:     a slow ramp from 5 to 180 jobs/s over 480 s, 120 s at the top, back down
                over 300 s, 1000 s;
- ``heavy``:    heavy-tailed job sizes (Pareto, alpha 1.3, 1 to 256 sentences per job):
                20 jobs/s, 70 jobs/s from t=200 s to 380 s, 600 s;
- ``bursts``:   10 jobs/s with 12 bursts of 15 s at 200 jobs/s at irregular (seeded)
                times, 900 s.

A live run recorded with ``elastiq simulate record`` can be stored as ``recorded`` (not
generated here): it joins the held-out set when the file exists.

**Fresh set** (``FRESH``: written down before the scale-down back-off was designed, on
2026-12-04, and run once after it; other seeds and shapes again, sized the same way --
peaks at 85-95 % of what two workers serve, in work for the heavy-tailed one):

- ``waves``:  a sine between 10 and 175 jobs/s with a 200 s period, 800 s;
- ``crowds``: two flash crowds on a base of 8 jobs/s: +172 at t=100 s (time constant
              40 s) and +142 at t=400 s (time constant 90 s), 700 s;
- ``mixed``:  heavy-tailed sizes (Pareto, alpha 1.6, 1 to 128 sentences per job):
              30 jobs/s, 90 from t=250 s to 430 s, 700 s;
- ``stairs``: 20, 60, 120, 170, 90, 20 jobs/s, 100 s each, 600 s;
- ``jitter``: 15 jobs/s with 20 bursts of 8 s at 190 jobs/s at irregular (seeded)
              times, 900 s.

**Second fresh set** (``FRESH2``: written down after the first fresh run had been seen and
before the back-off's reach was widened to ``max_window_s``; run once after that change):

- ``pulse``:  a square wave, 60 s at 160 jobs/s then 90 s at 20, 750 s;
- ``drift``:  a slow irregular rate, 95 + 50 sin(2 pi t / 310) + 30 sin(2 pi t / 97 + 1),
              within 10-180 jobs/s, 900 s;
- ``tail``:   heavy-tailed sizes (Pareto, alpha 1.4, 1 to 200 sentences per job): 35
              jobs/s, 72 from t=300 s to 450 s, 800 s;
- ``storm``:  12 jobs/s with 24 bursts of 5 s at 180 jobs/s at irregular (seeded) times,
              1000 s;
- ``dawn``:   a rise from 5 to 175 jobs/s over 600 s (faster towards the end), then 200 s
              at the top, 800 s.

**Third fresh set** (``FRESH3``: written down after the second fresh run had been seen and
before the back-off's decay was changed from "after 300 s with none undone" to "once a
scale-in has stood for 300 s"; run once after that change):

- ``hours``:  two humps on a base of 10 jobs/s: +80 around t=300 s (sd 100 s) and +160
              around t=850 s (sd 120 s), 1200 s;
- ``blips``:  25 jobs/s with 28 blips of 3 s at 220 jobs/s at irregular (seeded) times,
              1200 s;
- ``wide``:   very heavy-tailed sizes (Pareto, alpha 1.2, 1 to 256 sentences per job): 15
              jobs/s, 50 from t=200 s to 500 s, 700 s;
- ``climb``:  10 jobs/s, 15 more every 60 s up to 175, then back to 10 at t=720 s, 900 s;
- ``lull``:   150 jobs/s with three 60 s lulls at 10 jobs/s (from t=150, 450, 700 s), 900 s.

**Fourth fresh set** (``FRESH4``: written down after the third fresh run had been seen and
before the rate estimator's worker rate was changed from an EWMA of the saturated readings
to their median; run once before that change and once after):

- ``plateau``: 10 jobs/s, 170 from t=100 s to 500 s (a long saturated stretch), 700 s;
- ``echoes``:  three flash crowds on a base of 10 jobs/s: +175 at t=60 s (time constant
               50 s), +100 at t=300 s (30 s), +160 at t=520 s (60 s), 800 s;
- ``swells``:  40 jobs/s with 10 swells of 30 s at 170 jobs/s at irregular (seeded)
               times, 900 s;
- ``descent``: 170, 130, 90, 50, 20 jobs/s, 120 s each (the load is highest at the start),
               600 s;
- ``ripple``:  120 + 50 sin(2 pi t / 37) jobs/s for 600 s, then 15 until 800 s.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from autoscaler.traces import HERE, Trace, builtin_path, make_trace, save

BIN_S = 0.1
# One worker's jobs/s in the calibration the shapes below were sized against (torch engine,
# docs/sim/README.md "The machine" until bb719ae: worker_jobs_per_s 124.07).
REFERENCE_JOBS_PER_S = 124.07


def poisson(name: str, rate: Callable[[np.ndarray], np.ndarray], duration_s: float, seed: int,
            sizes: Callable[[np.random.Generator, int], np.ndarray] | None = None) -> Trace:
    """Arrivals of a Poisson process with time-varying ``rate(t)`` (jobs/s), deterministic.

    ``sizes(rng, n)``: sentences per job, drawn after the times (so the times do not depend
    on it); default one each.
    """
    rng = np.random.default_rng(seed)
    starts = np.arange(0.0, duration_s, BIN_S)
    counts = rng.poisson(np.maximum(rate(starts + BIN_S / 2), 0.0) * BIN_S)
    t = np.repeat(starts, counts) + rng.uniform(0.0, BIN_S, int(counts.sum()))
    t = np.round(np.sort(t), 3)
    size = None if sizes is None else sizes(rng, len(t))
    return make_trace(name, t, size, duration_s=duration_s)


def steady(t: np.ndarray) -> np.ndarray:
    return np.full_like(t, 150.0)


def step(t: np.ndarray) -> np.ndarray:
    return np.where((t >= 120) & (t < 240), 380.0, 30.0)


def diurnal(t: np.ndarray) -> np.ndarray:
    day = 150.0 - 140.0 * np.cos(2 * np.pi * np.minimum(t, 600.0) / 600.0)
    return np.where(t < 600.0, day, 10.0)


def spiky(t: np.ndarray) -> np.ndarray:
    return np.where((t % 120.0) >= 100.0, 400.0, 10.0)


# -- held-out shapes


def sawtooth(t: np.ndarray) -> np.ndarray:
    return 20.0 + 160.0 * ((t % 90.0) / 90.0)


def flash(t: np.ndarray) -> np.ndarray:
    return np.where(t < 150.0, 5.0, 5.0 + 185.0 * np.exp(-np.maximum(t - 150.0, 0.0) / 60.0))


def ramp(t: np.ndarray) -> np.ndarray:
    up = 5.0 + 175.0 * np.minimum(t, 480.0) / 480.0
    down = 180.0 - 175.0 * np.clip((t - 600.0) / 300.0, 0.0, 1.0)
    return np.where(t < 600.0, up, down)


def heavy(t: np.ndarray) -> np.ndarray:
    return np.where((t >= 200.0) & (t < 380.0), 70.0, 20.0)


def pareto_sizes(rng: np.random.Generator, n: int, alpha: float = 1.3, cap: int = 256) -> np.ndarray:
    """Sentences per job: a Pareto tail from 1 (``alpha`` 1.3: mean ~4, a few in the hundreds)."""
    return np.minimum(np.floor((1.0 - rng.uniform(0.0, 1.0, n)) ** (-1.0 / alpha)), cap).astype(np.int64)


def _burst_starts(seed: int = 505, n: int = 12, duration_s: float = 900.0, length_s: float = 15.0) -> np.ndarray:
    """``n`` non-overlapping burst starts at irregular times (gaps 30 s or more)."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0, n + 1)
    room = duration_s - n * length_s - (n + 1) * 30.0
    return np.cumsum(30.0 + gaps[:-1] / gaps.sum() * room + np.r_[0.0, np.full(n - 1, length_s)])


def in_windows(t: np.ndarray, starts, length_s: float) -> np.ndarray:
    """Which times fall inside one of the windows ``[start, start + length_s)``."""
    starts = np.asarray(starts, dtype=float)
    return np.any((t[:, None] >= starts) & (t[:, None] < starts + length_s), axis=1)


BURSTS = _burst_starts()


def bursts(t: np.ndarray) -> np.ndarray:
    return np.where(in_windows(t, BURSTS, 15.0), 200.0, 10.0)


# -- fresh held-out shapes


def waves(t: np.ndarray) -> np.ndarray:
    return 92.5 - 82.5 * np.cos(2 * np.pi * t / 200.0)


def crowd(t: np.ndarray, at: float, height: float, tau: float) -> np.ndarray:
    return np.where(t < at, 0.0, height * np.exp(-np.maximum(t - at, 0.0) / tau))


def crowds(t: np.ndarray) -> np.ndarray:
    return 8.0 + crowd(t, 100.0, 172.0, 40.0) + crowd(t, 400.0, 142.0, 90.0)


def mixed(t: np.ndarray) -> np.ndarray:
    return np.where((t >= 250.0) & (t < 430.0), 90.0, 30.0)


def mixed_sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    return pareto_sizes(rng, n, alpha=1.6, cap=128)


STAIRS = np.array([20.0, 60.0, 120.0, 170.0, 90.0, 20.0])


def stairs(t: np.ndarray) -> np.ndarray:
    return STAIRS[np.clip((t // 100.0).astype(int), 0, len(STAIRS) - 1)]


JITTER = _burst_starts(seed=606, n=20, duration_s=900.0, length_s=8.0)


def jitter(t: np.ndarray) -> np.ndarray:
    return np.where(in_windows(t, JITTER, 8.0), 190.0, 15.0)


# -- second fresh set


def pulse(t: np.ndarray) -> np.ndarray:
    return np.where((t % 150.0) < 60.0, 160.0, 20.0)


def drift(t: np.ndarray) -> np.ndarray:
    r = 95.0 + 50.0 * np.sin(2 * np.pi * t / 310.0) + 30.0 * np.sin(2 * np.pi * t / 97.0 + 1.0)
    return np.clip(r, 10.0, 180.0)


def tail(t: np.ndarray) -> np.ndarray:
    return np.where((t >= 300.0) & (t < 450.0), 72.0, 35.0)


def tail_sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    return pareto_sizes(rng, n, alpha=1.4, cap=200)


STORM = _burst_starts(seed=707, n=24, duration_s=1000.0, length_s=5.0)


def storm(t: np.ndarray) -> np.ndarray:
    return np.where(in_windows(t, STORM, 5.0), 180.0, 12.0)


def dawn(t: np.ndarray) -> np.ndarray:
    return 5.0 + 170.0 * (np.minimum(t, 600.0) / 600.0) ** 2


# -- third fresh set


def hours(t: np.ndarray) -> np.ndarray:
    return 10.0 + 80.0 * np.exp(-0.5 * ((t - 300.0) / 100.0) ** 2) + 160.0 * np.exp(-0.5 * ((t - 850.0) / 120.0) ** 2)


BLIPS = _burst_starts(seed=808, n=28, duration_s=1200.0, length_s=3.0)


def blips(t: np.ndarray) -> np.ndarray:
    return np.where(in_windows(t, BLIPS, 3.0), 220.0, 25.0)


def wide(t: np.ndarray) -> np.ndarray:
    return np.where((t >= 200.0) & (t < 500.0), 50.0, 15.0)


def wide_sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    return pareto_sizes(rng, n, alpha=1.2, cap=256)


def climb(t: np.ndarray) -> np.ndarray:
    return np.where(t < 720.0, np.minimum(10.0 + 15.0 * (t // 60.0), 175.0), 10.0)


def lull(t: np.ndarray) -> np.ndarray:
    return np.where(in_windows(t, (150.0, 450.0, 700.0), 60.0), 10.0, 150.0)


# -- fourth fresh set


def plateau(t: np.ndarray) -> np.ndarray:
    return np.where((t >= 100.0) & (t < 500.0), 170.0, 10.0)


def echoes(t: np.ndarray) -> np.ndarray:
    return 10.0 + crowd(t, 60.0, 175.0, 50.0) + crowd(t, 300.0, 100.0, 30.0) + crowd(t, 520.0, 160.0, 60.0)


SWELLS = _burst_starts(seed=909, n=10, duration_s=900.0, length_s=30.0)


def swells(t: np.ndarray) -> np.ndarray:
    return np.where(in_windows(t, SWELLS, 30.0), 170.0, 40.0)


DESCENT = np.array([170.0, 130.0, 90.0, 50.0, 20.0])


def descent(t: np.ndarray) -> np.ndarray:
    return DESCENT[np.clip((t // 120.0).astype(int), 0, len(DESCENT) - 1)]


def ripple(t: np.ndarray) -> np.ndarray:
    return np.where(t < 600.0, 120.0 + 50.0 * np.sin(2 * np.pi * t / 37.0), 15.0)


# name -> (rate, duration s, seed, sizes)
DEV = {
    "steady": (steady, 600.0, 1, None),
    "step": (step, 600.0, 2, None),
    "diurnal": (diurnal, 900.0, 3, None),
    "spiky": (spiky, 720.0, 4, None),
}
HELDOUT = {
    "sawtooth": (sawtooth, 720.0, 101, None),
    "flash": (flash, 600.0, 102, None),
    "ramp": (ramp, 1000.0, 103, None),
    "heavy": (heavy, 600.0, 104, pareto_sizes),
    "bursts": (bursts, 900.0, 105, None),
}
FRESH = {
    "waves": (waves, 800.0, 201, None),
    "crowds": (crowds, 700.0, 202, None),
    "mixed": (mixed, 700.0, 203, mixed_sizes),
    "stairs": (stairs, 600.0, 204, None),
    "jitter": (jitter, 900.0, 205, None),
}
FRESH2 = {
    "pulse": (pulse, 750.0, 301, None),
    "drift": (drift, 900.0, 302, None),
    "tail": (tail, 800.0, 303, tail_sizes),
    "storm": (storm, 1000.0, 304, None),
    "dawn": (dawn, 800.0, 305, None),
}
FRESH3 = {
    "hours": (hours, 1200.0, 401, None),
    "blips": (blips, 1200.0, 402, None),
    "wide": (wide, 700.0, 403, wide_sizes),
    "climb": (climb, 900.0, 404, None),
    "lull": (lull, 900.0, 405, None),
}
FRESH4 = {
    "plateau": (plateau, 700.0, 501, None),
    "echoes": (echoes, 800.0, 502, None),
    "swells": (swells, 900.0, 503, None),
    "descent": (descent, 600.0, 504, None),
    "ripple": (ripple, 800.0, 505, None),
}
SPECS = {**DEV, **HELDOUT, **FRESH, **FRESH2, **FRESH3, **FRESH4}


def build(name: str, scale: float = 1.0) -> Trace:
    """The trace ``name`` with every rate multiplied by ``scale``."""
    rate, duration, seed, sizes = SPECS[name]
    return poisson(name, lambda t: scale * rate(t), duration, seed, sizes)


def machine_scale(calibration: str | None = None) -> float:
    """The calibrated worker's rate over the reference the shapes were sized against."""
    from autoscaler.simulator import machine

    return machine.calibration(calibration).worker_jobs_per_s / REFERENCE_JOBS_PER_S


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--scale", type=float, help="rate multiplier (default: calibrated worker / reference worker)")
    p.add_argument("--calibration", help="for the default scale (default: docs/sim/calibration)")
    args = p.parse_args(argv)
    scale = args.scale if args.scale is not None else machine_scale(args.calibration)
    print(f"rates x {scale:.3f}")
    for name in SPECS:
        path = save(build(name, scale), args.out / builtin_path(name).name)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
