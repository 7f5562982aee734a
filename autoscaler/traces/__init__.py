"""Arrival traces for the simulator: built-in files, user files and recorded timelines.

A trace is a list of job arrivals: time (seconds from the start) and size (sentences per
job, 1 by default), plus an optional priority (0 = the queue's main Redis list; >0 = one
of Celery's priority sub-lists, which KEDA's LLEN does not count).

Accepted files, plain or ``.gz``:

- CSV with a header naming at least ``t`` (``size`` and ``priority`` optional);
- JSON lines of arrivals: ``{"t": 1.25, "size": 1}``;
- JSON lines written by ``elastiq autoscale --timeline`` (rows with ``t``, ``queue``,
  ``waiting``, ``in_flight``, ``current``, ``desired``): arrivals are *derived*, see
  :func:`autoscaler.traces.timeline.arrivals_from_timeline`.

The built-in traces are files in this folder, written by ``python -m
autoscaler.traces.generate`` from fixed seeds, so every run replays the same arrivals:
a development set (``DEV``, the policy was tuned on it), a held-out set (``HELDOUT``,
never used for tuning; looked at since), plus ``recorded.csv.gz`` when a live run has been
recorded, and four fresh held-out sets (``FRESH`` .. ``FRESH4``), each written down before
a policy change and run once before and once after it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEV = ("steady", "step", "diurnal", "spiky")                  # the policy was tuned on these
HELDOUT = ("sawtooth", "flash", "ramp", "heavy", "bursts")    # never used to tune it
FRESH = ("waves", "crowds", "mixed", "stairs", "jitter")      # written down before the back-off
FRESH2 = ("pulse", "drift", "tail", "storm", "dawn")          # written down before its reach was widened
FRESH3 = ("hours", "blips", "wide", "climb", "lull")          # written down before its decay was changed
FRESH4 = ("plateau", "echoes", "swells", "descent", "ripple")  # written down before the worker rate's median
RECORDED = "recorded"        # a live run (``elastiq simulate record``), held out when present
BUILTIN = DEV + HELDOUT + FRESH + FRESH2 + FRESH3 + FRESH4


def heldout() -> tuple[str, ...]:
    """The held-out traces: the generated ones, and the recorded live run if it is stored."""
    return HELDOUT + ((RECORDED,) if builtin_path(RECORDED).exists() else ())


@dataclass(frozen=True)
class Trace:
    name: str
    t: np.ndarray            # arrival times, seconds, sorted ascending
    size: np.ndarray         # sentences per job (>= 1)
    priority: np.ndarray     # 0 = main list, > 0 = a priority sub-list
    duration_s: float        # how long the trace lasts (idle tail included)

    def __post_init__(self) -> None:
        if not (len(self.t) == len(self.size) == len(self.priority)):
            raise ValueError("trace columns differ in length")
        if len(self.t) and (np.any(np.diff(self.t) < 0) or self.t[0] < 0):
            raise ValueError(f"trace {self.name}: arrival times must be >= 0 and sorted")

    @property
    def jobs(self) -> int:
        return int(len(self.t))


def make_trace(name: str, t, size=None, priority=None, duration_s: float | None = None) -> Trace:
    t = np.asarray(t, dtype=float)
    order = np.argsort(t, kind="stable")
    t = t[order]
    size = np.ones(len(t), dtype=np.int64) if size is None else np.asarray(size, dtype=np.int64)[order]
    priority = np.zeros(len(t), dtype=np.int64) if priority is None else np.asarray(priority, np.int64)[order]
    last = float(t[-1]) if len(t) else 0.0
    duration = last + 1.0 if duration_s is None else max(duration_s, last)
    return Trace(name, t, np.maximum(size, 1), priority, duration)


def builtin_path(name: str) -> Path:
    return HERE / f"{name}.csv.gz"


def _open_text(path: Path) -> str:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode()


def _duration_comment(text: str) -> float | None:
    first = text.split("\n", 1)[0]
    if first.startswith("# duration_s="):
        return float(first.split("=", 1)[1])
    return None


def load(name_or_path: str | Path) -> Trace:
    """A built-in trace by name, or a CSV / JSON-lines / timeline file by path."""
    if str(name_or_path) in BUILTIN + (RECORDED,):
        path, name = builtin_path(str(name_or_path)), str(name_or_path)
    else:
        path = Path(name_or_path)
        name = path.name.split(".")[0]
    if not path.exists():
        raise FileNotFoundError(f"no trace {name_or_path!r}: not a built-in ({', '.join(BUILTIN)}) nor a file")
    text = _open_text(path)
    duration = _duration_comment(text)
    body = "\n".join(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    if body.lstrip().startswith("{"):
        rows = [json.loads(line) for line in body.splitlines()]
        if rows and "waiting" in rows[0] and "current" in rows[0]:
            from autoscaler.traces.timeline import arrivals_from_timeline
            return arrivals_from_timeline(rows, name=name)
        return make_trace(name, [r["t"] for r in rows], [r.get("size", 1) for r in rows],
                          [r.get("priority", 0) for r in rows], duration)
    reader = csv.DictReader(io.StringIO(body))
    if reader.fieldnames is None or "t" not in reader.fieldnames:
        raise ValueError(f"{path}: a CSV trace needs a header with a 't' column")
    rows = list(reader)
    return make_trace(name, [float(r["t"]) for r in rows], [int(r.get("size") or 1) for r in rows],
                      [int(r.get("priority") or 0) for r in rows], duration)


def save(trace: Trace, path: Path) -> Path:
    """Write a trace as CSV (gzip when the name ends in ``.gz``), byte-for-byte reproducible."""
    out = io.StringIO()
    out.write(f"# duration_s={trace.duration_s:g}\n")
    with_priority = bool(np.any(trace.priority))
    out.write("t,size,priority\n" if with_priority else "t,size\n")
    for i in range(trace.jobs):
        row = f"{trace.t[i]:.3f},{trace.size[i]}"
        out.write(row + (f",{trace.priority[i]}\n" if with_priority else "\n"))
    data = out.getvalue().encode()
    path = Path(path)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path
