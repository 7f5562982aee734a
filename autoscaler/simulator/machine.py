"""The machine the simulated pool runs on, calibrated from the benchmark reports.

Every number is read from a measurement file (``docs/sim/calibration/*.json`` by default, a frozen copy, or one
calibration JSON with the same fields), never written into code, and each carries its
source. What is modelled (``autoscaler.simulator.model`` uses it):

- ``cpus``: the host's cores, shared by every worker (a saturated worker takes about one);
- ``worker_jobs_per_s``: one worker alone, saturated, one-sentence jobs;
- ``host_jobs_per_s``: every worker together, saturated -- what the host can do however
  many workers run (on this 2-core machine two workers made ~200 jobs/s, not 2 x 110);
- ``single_job_s``: seconds one one-sentence job holds a slot when it runs alone;
- ``extra_sentence_work``: what each sentence past a job's first costs, in one-sentence
  jobs (per-job overhead is paid once): from the worker CPU per job of 1- and 8-sentence
  jobs in ``efficiency.json``;
- ``cold_start_s``: measured start -> ready samples; each new worker draws one;
- ``worker_rss_mb`` / ``host_memory_mb``: memory one worker holds, and the host's.

Sources, in order of preference: ``capacity.json`` (``elastiq bench capacity``: 1, 2 and 4
workers saturated, and a job alone), else derived from the other reports -- one worker
from the worker CPU per job in ``efficiency.json`` (a one-thread worker uses one core at
most), the host from its two-worker pool, a job alone from ``batching.json``'s in-process
batch-of-1 rate; cold start from ``coldstart.json``; memory from ``memory.json`` and, for
the host's total, ``capacity.json`` or this host's ``/proc/meminfo``. A report written by
a ``--smoke`` run is not a measurement and is refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from elastiq.errors import ConfigError
from elastiq.local import procs

ROOT = Path(__file__).resolve().parents[2]
# The reports the simulator's published results (docs/sim) were computed with, frozen here
# so that re-running the figure benchmarks does not silently move them; recalibrate with
# --calibration docs/bench (and re-run `elastiq simulate --set ...`) on purpose.
BENCH_DIR = ROOT / "docs" / "sim" / "calibration"


@dataclass(frozen=True)
class Calibration:
    cpus: int
    worker_jobs_per_s: float
    host_jobs_per_s: float
    single_job_s: float
    extra_sentence_work: float        # each sentence past a job's first, in 1-sentence jobs
    cold_start_s: tuple[float, ...]
    worker_rss_mb: float
    host_memory_mb: float
    sources: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.cpus < 1 or min(self.worker_jobs_per_s, self.host_jobs_per_s, self.single_job_s) <= 0:
            raise ConfigError(f"calibration: cpus >= 1 and positive rates/times needed, got {self}")
        if not 0 <= self.extra_sentence_work <= 1:
            raise ConfigError(f"calibration: extra_sentence_work must be in [0, 1], got {self.extra_sentence_work}")
        if not self.cold_start_s or min(self.cold_start_s) < 0:
            raise ConfigError("calibration: at least one cold start sample >= 0 is needed")
        if self.worker_rss_mb <= 0 or self.host_memory_mb <= 0:
            raise ConfigError("calibration: worker_rss_mb and host_memory_mb must be > 0")

    def as_dict(self) -> dict:
        return asdict(self)


def _read(bench: Path, name: str, required: bool = True) -> dict | None:
    path = bench / name
    if not path.exists():
        if required:
            raise ConfigError(f"calibration needs {path} (run `elastiq bench {name.split('.')[0]}`)")
        return None
    report = json.loads(path.read_text())
    if report.get("smoke"):
        raise ConfigError(f"{path} was written by a --smoke run: not a measurement")
    return report


def _meminfo_mb() -> float:
    total = procs.host_memory_mb()
    if total is None:
        raise ConfigError("cannot read MemTotal from /proc/meminfo")
    return total


def _arm(eff: dict, name: str) -> dict:
    """One arm of an efficiency report: ``cpu_ms_per_job``, ``jobs``, ``texts`` (and
    ``jobs_per_s``). Reports from 33fc26d on keep them per round in ``runs``: the median
    round's, by workers' CPU per job."""
    arm = eff[name]
    if "cpu_ms_per_job" in arm or not arm.get("runs"):
        return arm
    runs = sorted(arm["runs"], key=lambda r: float(r["cpu_ms_per_job"]["workers"]))
    return runs[len(runs) // 2]


def _extra_sentence_work(eff: dict, src: dict) -> float:
    one, many = _arm(eff, "single"), _arm(eff, "eight")
    c1 = float(one["cpu_ms_per_job"]["workers"])
    cn = float(many["cpu_ms_per_job"]["workers"])
    n = many["texts"] / many["jobs"]
    src["extra_sentence_work"] = ("efficiency.json: (eight - single).cpu_ms_per_job.workers / "
                                  "(sentences per job - 1) / single.cpu_ms_per_job.workers")
    return (cn - c1) / (n - 1) / c1


def _throughputs(eff: dict, capacity: dict | None, src: dict) -> tuple[float, float, int]:
    cpus = int(eff["machine"].get("cpu_budget") or eff["machine"]["cpus"])
    src["cpus"] = "efficiency.json machine.cpu_budget"
    if capacity:
        pools = {int(p["workers"]): float(p["jobs_per_s"]) for p in capacity["pools"]}
        src["worker_jobs_per_s"] = "capacity.json pools[workers=1].jobs_per_s"
        src["host_jobs_per_s"] = "capacity.json max over pools of jobs_per_s"
        return pools[1], max(pools.values()), cpus
    single = _arm(eff, "single")
    one = 1000.0 / float(single["cpu_ms_per_job"]["workers"])
    src["worker_jobs_per_s"] = ("derived: 1000 / efficiency.json single.cpu_ms_per_job.workers "
                                "(a one-thread worker uses one core at most)")
    src["host_jobs_per_s"] = f"efficiency.json single.jobs_per_s ({single['workers']} workers, saturated)"
    return one, float(single["jobs_per_s"]), cpus


def from_bench(bench_dir: str | Path = BENCH_DIR) -> Calibration:
    """Build the calibration from the benchmark reports in ``bench_dir``."""
    bench = Path(bench_dir)
    src: dict[str, str] = {}
    capacity = _read(bench, "capacity.json", required=False)
    eff = _read(bench, "efficiency.json")
    worker, host, cpus = _throughputs(eff, capacity, src)
    extra = _extra_sentence_work(eff, src)
    if capacity and capacity.get("alone", {}).get("service_s_median"):
        single_job = float(capacity["alone"]["service_s_median"])
        src["single_job_s"] = "capacity.json alone.service_s_median"
    else:
        single_job = 1.0 / float(_read(bench, "batching.json")["inprocess_batch1_texts_per_s"])
        src["single_job_s"] = "derived: 1 / batching.json inprocess_batch1_texts_per_s"
    cold = _read(bench, "coldstart.json")
    samples = tuple(float(r["ready_s"]) for r in cold.get("runs_detail") or [{"ready_s": cold["ready_s"]}])
    src["cold_start_s"] = f"coldstart.json runs_detail[].ready_s ({cold.get('model')})"
    mem = _read(bench, "memory.json")
    rss = max(float(p["rss_mb_per_worker"]) for p in mem["pools"])
    src["worker_rss_mb"] = "memory.json max over pools of rss_mb_per_worker"
    if capacity and capacity.get("machine", {}).get("memory_mb"):
        host_mem = float(capacity["machine"]["memory_mb"])
        src["host_memory_mb"] = "capacity.json machine.memory_mb"
    else:
        host_mem = _meminfo_mb()
        src["host_memory_mb"] = "this host's /proc/meminfo MemTotal, read when calibrating"
    return Calibration(cpus, round(worker, 2), round(host, 2), round(single_job, 5), round(extra, 4), samples,
                       round(rss, 1), round(host_mem, 1), src)


def save(cal: Calibration, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(cal.as_dict(), indent=2) + "\n")
    return path


def load(path: str | Path) -> Calibration:
    """A calibration JSON (the fields of :class:`Calibration`), e.g. written after new measurements."""
    try:
        data = json.loads(Path(path).read_text())
        data["cold_start_s"] = tuple(float(x) for x in data["cold_start_s"])
        return Calibration(**data)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"calibration {path}: {exc}") from None


def calibration(path: str | Path | None = None) -> Calibration:
    """A directory of benchmark reports, a calibration JSON file, or (None) ``docs/bench``."""
    if path is None:
        return from_bench()
    path = Path(path)
    return from_bench(path) if path.is_dir() else load(path)
