"""``elastiq bench capacity``: what the host serves with 1, 2 and 4 workers, and a job alone.

The simulator's machine model is calibrated from this (``autoscaler/simulator/machine.py``):

- ``pools[]``: N workers x ``slots`` slots x 1 torch thread, saturated (every job
  submitted up front) with single-sentence jobs: jobs/s. One worker alone gives what a
  worker serves; the most any pool gives is what the host serves -- on a 2-core machine
  two workers do not serve twice one, and four no more than two;
- ``alone``: one worker, one job at a time (each submitted when the previous finished):
  the seconds a job holds its slot (``finished_at - started_at``), median and p90;
- ``machine.memory_mb``: the host's memory, for the memory cap.

Baseline for the ratios: the one-worker pool, same run.
"""

from __future__ import annotations

import statistics
import time

from benchmarks import harness as h
from elastiq.local import procs


def _memory_mb() -> float | None:
    total = procs.host_memory_mb()
    return None if total is None else round(total, 1)


def _alone(client, model: str, texts: list[str]) -> dict:
    holds = []
    for text in texts:
        t = client.submit(model, [text]).result(timeout=120).timings
        holds.append(t["finished_at"] - t["started_at"])
    holds.sort()
    return {"jobs": len(holds), "service_s_median": round(statistics.median(holds), 5),
            "service_s_p90": round(h.percentile(holds, 90), 5)}


def run(*, smoke: bool = False, model: str = "minilm", counts: tuple[int, ...] = (1, 2, 4), slots: int = 16,
        jobs: int = 3000, alone: int = 200) -> dict:
    if smoke:
        counts, jobs, alone = (1, 2), 120, 5
    texts = h.sentences(jobs)
    report: dict = {"benchmark": "capacity", "model": model, "machine": {**h.machine(), "memory_mb": _memory_mb()},
                    "slots": slots, "threads": 1, "pools": []}
    with h.stack() as st:
        for n in counts:
            h.stage(f"{n} worker(s) x {slots} slots, {jobs} single-sentence jobs")
            st.start_workers(model, n, slots=slots, threads=1)
            with st.client() as client:
                h.run_jobs(client, model, [[t] for t in texts[: max(32, jobs // 10)]])     # warm-up
                pool = h.run_jobs(client, model, [[t] for t in texts], stack=st)
                if n == 1:
                    h.stage(f"{alone} jobs one at a time")
                    time.sleep(0.5)
                    report["alone"] = _alone(client, model, texts[:alone])
            report["pools"].append({"workers": n, **pool})
            st.stop_workers()
    one = report["pools"][0]["jobs_per_s"]
    for p in report["pools"]:
        p["vs_one_worker"] = round(p["jobs_per_s"] / one, 3)
    report["host_jobs_per_s"] = max(p["jobs_per_s"] for p in report["pools"])
    return report
