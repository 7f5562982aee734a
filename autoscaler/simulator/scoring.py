"""Scoring a trace's results: every ratio to every baseline, the best baseline, and the targets.

**Load phase** (:func:`load_phases`): the trace's offered work is averaged over 5 s
windows and turned into the workers it needs on this machine, ``level = clamp(ceil(work
per s / what one worker serves), min_workers, max_workers)``; a phase is a run of windows
at one level, and a run shorter than 10 s (two windows) is folded into the neighbour
nearest in level, shortest first (Poisson noise at a level boundary is not a phase; a 15
s burst, the shortest in the built-in traces, is: wherever it falls it fills two whole
windows). A flat trace is one phase; a step up and back down is three.

**Targets** (issue #19, "Done when"), checked per trace by :func:`check_targets`:

- worker-seconds <= 0.6 x static-max's;
- p95 wait <= 0.5 x KEDA-at-defaults', at no more worker-seconds than it;
- p95 wait <= 1.0 x tuned KEDA's, at no more worker-seconds than it;
- not dominated: no baseline has fewer worker-seconds *and* a lower p95 wait;
- direction changes <= the fewest of any baseline + 1 per load phase.

p95 waits are compared at 10 ms resolution (rounded to 0.01 s): one job's slot time here
is ~8 ms, below what the model resolves.
"""

from __future__ import annotations

import numpy as np

from autoscaler.simulator.model import SimParams
from autoscaler.simulator.report import Summary
from autoscaler.traces import Trace

WINDOW_S = 5.0
MIN_PHASE_S = 10.0
RESOLUTION_S = 0.01
STATIC_WS_MAX = 0.6
KEDA_P95_MAX = 0.5
KEDA_TUNED_P95_MAX = 1.0


def load_phases(trace: Trace, params: SimParams, window_s: float = WINDOW_S,
                min_phase_s: float = MIN_PHASE_S) -> list[dict]:
    """The trace's load phases: ``[{"start_s", "end_s", "level"}]`` (see the module doc)."""
    if trace.duration_s <= 0:
        return []
    edges = np.arange(0.0, trace.duration_s + window_s, window_s)
    units = 1.0 + params.extra_sentence_work * (trace.size.astype(float) - 1.0)
    work, _ = np.histogram(trace.t, bins=edges, weights=units)
    need = np.ceil(work / window_s / params.throughput_per_worker - 1e-9)
    levels = np.clip(need, max(params.min_workers, 1), params.max_workers).astype(int)
    runs: list[list] = []
    for i, level in enumerate(levels):
        if runs and runs[-1][2] == level:
            runs[-1][1] = edges[i + 1]
        else:
            runs.append([edges[i], edges[i + 1], int(level)])
    return [{"start_s": float(a), "end_s": float(min(b, trace.duration_s)), "level": lv}
            for a, b, lv in _merge_short(runs, min_phase_s)]


def _merge_short(runs: list[list], min_s: float) -> list[list]:
    """Fold each run shorter than ``min_s`` (shortest first) into the neighbour nearest in level."""
    runs = [list(r) for r in runs]
    while len(runs) > 1:
        short = [i for i, r in enumerate(runs) if r[1] - r[0] < min_s]
        if not short:
            break
        i = min(short, key=lambda k: (runs[k][1] - runs[k][0], k))
        j = min((k for k in (i - 1, i + 1) if 0 <= k < len(runs)),
                key=lambda k: (abs(runs[k][2] - runs[i][2]), k > i))
        runs[j][0], runs[j][1] = min(runs[j][0], runs[i][0]), max(runs[j][1], runs[i][1])
        del runs[i]
        k = 0
        while k + 1 < len(runs):          # neighbours at one level are one run
            if runs[k][2] == runs[k + 1][2]:
                runs[k][1] = runs[k + 1][1]
                del runs[k + 1]
            else:
                k += 1
    return runs


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else (1.0 if a == b else None)


def _p95(s: Summary) -> float:
    return round(s.wait_p95_s / RESOLUTION_S) * RESOLUTION_S


def ratios(main: Summary, baselines: dict[str, Summary]) -> dict:
    """``main`` against each baseline and against the best baseline for each measure."""
    out: dict = {"vs": {}, "best": {}}
    for name, b in baselines.items():
        out["vs"][name] = {"worker_seconds": _ratio(main.worker_seconds, b.worker_seconds),
                           "p95_wait": _ratio(_p95(main), _p95(b)),
                           # wait + time in the slot: what the submitter sees. On a CPU-bound host a
                           # pool with more workers than cores starts jobs sooner (lower wait) that
                           # then share the same cores (longer holds): reported beside the wait.
                           "p95_latency": (_ratio(main.latency_p95_s, b.latency_p95_s)
                                           if main.latency_p95_s is not None and b.latency_p95_s is not None
                                           else None),
                           "direction_changes": main.direction_changes - b.direction_changes}
    if not baselines:
        return out
    for measure, key in (("worker_seconds", lambda s: s.worker_seconds), ("p95_wait", _p95),
                         ("direction_changes", lambda s: s.direction_changes)):
        name = min(baselines, key=lambda n, key=key: (key(baselines[n]), n))
        compared = "difference" if measure == "direction_changes" else "ratio"
        out["best"][measure] = {"baseline": name, "value": key(baselines[name]),
                                compared: out["vs"][name][measure]}
    return out


def dominated_by(main: Summary, baselines: dict[str, Summary]) -> list[str]:
    """Baselines with fewer worker-seconds *and* a lower p95 wait than ``main``."""
    return [n for n, b in baselines.items() if b.worker_seconds < main.worker_seconds and _p95(b) < _p95(main)]


def warm_floor(pools: dict[int, Summary] | None) -> tuple[int, float] | None:
    """(workers, p95 wait) of the warm fixed pool with the lowest p95 wait."""
    if not pools:
        return None
    n = min(pools, key=lambda k: (_p95(pools[k]), k))
    return n, _p95(pools[n])


def check_targets(main: Summary, baselines: dict[str, Summary], phases: int,
                  floor: tuple[int, float] | None = None) -> dict[str, dict]:
    """Each target: ``{"ok": bool, "detail": str}`` (a target whose baseline did not run is left out).

    ``floor``: the best warm fixed pool's (workers, p95 wait). A missed p95 target that even
    that pool misses is marked ``"attainable": False`` -- still missed, with the reason."""
    out: dict[str, dict] = {}
    st, k, kt = baselines.get("static"), baselines.get("keda"), baselines.get("keda-tuned")
    if st:
        r = _ratio(main.worker_seconds, st.worker_seconds)
        out["worker_seconds_vs_static"] = {"ok": r is not None and r <= STATIC_WS_MAX,
                                           "detail": f"{r} (<= {STATIC_WS_MAX})"}
    for name, base, bound in (("keda", k, KEDA_P95_MAX), ("keda_tuned", kt, KEDA_TUNED_P95_MAX)):
        if base is None:
            continue
        ok = _p95(main) <= bound * _p95(base) + 1e-9 and main.worker_seconds <= base.worker_seconds
        out[f"p95_vs_{name}"] = {"ok": ok, "detail": (
            f"p95 {_p95(main):.2f}s vs {_p95(base):.2f}s (<= {bound}x), worker-s "
            f"{main.worker_seconds:.0f} vs {base.worker_seconds:.0f} (<=)")}
        if not ok and floor is not None and floor[1] > bound * _p95(base) + 1e-9:
            out[f"p95_vs_{name}"].update(attainable=False, detail=out[f"p95_vs_{name}"]["detail"] + (
                f"; unattainable on this machine: the best warm fixed pool ({floor[0]} workers from t=0) "
                f"waits p95 {floor[1]:.2f}s"))
    by = dominated_by(main, baselines)
    out["not_dominated"] = {"ok": not by, "detail": f"dominated by {by}" if by else "no baseline has both fewer"}
    if baselines:
        fewest = min(b.direction_changes for b in baselines.values())
        allowed = fewest + phases
        out["direction_changes"] = {"ok": main.direction_changes <= allowed, "detail": (
            f"{main.direction_changes} (<= fewest baseline {fewest} + {phases} phase(s) = {allowed})")}
    return out


def score_trace(trace: Trace, params: SimParams, summaries: list[Summary], main: str = "elastiq",
                pools: dict[int, Summary] | None = None) -> dict:
    """Everything the report says about one trace beyond the per-policy summaries;
    ``pools``: warm fixed pools by size (``runner.warm_pools``), for the attainable floor."""
    by = {s.policy: s for s in summaries}
    from autoscaler.simulator.runner import BASELINES

    baselines = {n: by[n] for n in BASELINES if n in by}
    phases = load_phases(trace, params)
    out: dict = {"load_phases": len(phases), "phases": phases}
    floor = warm_floor(pools)
    if pools:
        out["warm_pools"] = {str(n): {"worker_seconds": round(s.worker_seconds, 1), "wait_p95_s": round(_p95(s), 3)}
                             for n, s in pools.items()}
    if main in by:
        out["ratios"] = ratios(by[main], baselines)
        out["dominated_by"] = dominated_by(by[main], baselines)
        out["targets"] = check_targets(by[main], baselines, len(phases), floor)
        out["targets_met"] = all(t["ok"] for t in out["targets"].values())
    return out
