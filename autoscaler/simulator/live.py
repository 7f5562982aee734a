"""A live run against the simulator: record one, then replay it and compare.

    elastiq simulate record --trace burst.csv --out run/ [--model minilm] [--workers 1]
                            [--time-scale 1] [--save-trace autoscaler/traces/recorded.csv.gz]
    elastiq simulate replay run/recording.json [--png run/fidelity.png] [--json run/fidelity.json]
                            [--calibration cal.json]
    elastiq simulate calibrate run/recording.json --out cal.json

``record`` brings up the local stack exactly as ``elastiq up --autoscale`` does (a private
``ELASTIQ_HOME``: redis-server, N workers, the autoscaler with the process backend), then a
real client submits the trace's jobs at their arrival times (open loop: a slow pool does
not slow the arrivals down) and collects every result. It writes ``recording.json``: each
job's submit time, queue wait, worker and start/end; the autoscaler's timeline (workers,
waiting, in flight, decisions, one row a tick) over the run; the workers' measured cold
starts; the policy settings the autoscaler ran with; the commit. ``--save-trace`` also
stores the submit times as a trace file (the held-out set's ``recorded`` slot).

``replay`` feeds the recorded submit times to the simulator with the same policy settings
and the machine calibrated from docs/bench, and compares worker-seconds, p95 job wait and
the worker count over time (:mod:`autoscaler.simulator.compare`); the PNG shows both runs.

``calibrate`` writes a calibration JSON whose worker and host rates are the ones the pool
served in a recording's saturated seconds (the benchmarks measure them in a short batch
run; a long live run with a real-time client and the autoscaler on the same cores serves
less). Replay *another* recording with it: a rate taken from a run and checked on that
same run proves nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from autoscaler.traces import Trace, load, make_trace, save

RET_OK, RET_USAGE = 0, 2


def _texts(n: int) -> list[str]:
    from importlib import resources

    base = [x.strip() for x in resources.files("elastiq").joinpath("data/corpus.txt").read_text().splitlines()
            if x.strip()]
    return [f"{base[i % len(base)]} ({i})" for i in range(n)]


def drive(client, model: str, trace: Trace, time_scale: float = 1.0) -> tuple[float, list]:
    """Submit each job at ``t0 + t x time_scale`` (open loop); returns t0 and (index, submitted, job)."""
    texts = _texts(max(1, int(trace.size.max()) if trace.jobs else 1) * 64)
    due_at = trace.t * time_scale
    sent: list = []
    i, n = 0, trace.jobs
    t0 = time.time()
    while i < n:
        now = time.time() - t0
        due = int(np.searchsorted(due_at, now, side="right"))
        if due <= i:
            time.sleep(min(0.01, max(0.0, due_at[i] - now)))
            continue
        batch = [[texts[(k * 7 + j) % len(texts)] for j in range(int(trace.size[k]))] for k in range(i, due)]
        jobs = client.submit_many(model, batch)
        submitted = time.time()
        sent += [(k, submitted, job) for k, job in zip(range(i, due), jobs)]
        i = due
    return t0, sent


def collect(sent: list, t0: float, timeout_s: float) -> list[dict]:
    rows = []
    for k, submitted, job in sent:
        row = {"i": k, "submitted_s": round(submitted - t0, 4)}
        try:
            timings = job.result(timeout=timeout_s).timings
            row.update(wait_s=round((timings.get("queue_wait_ms") or 0.0) / 1000, 4), worker=timings.get("worker"),
                       started_s=round(timings["started_at"] - t0, 4), finished_s=round(timings["finished_at"] - t0, 4))
        except Exception as exc:   # noqa: BLE001 - a failed job is recorded, not hidden
            row["error"] = f"{type(exc).__name__}: {exc}"[:200]
        rows.append(row)
    return rows


def _settle(timeline: Path, t_end: float, min_workers: int, timeout_s: float) -> None:
    """Wait for the trace's end, then (at most ``timeout_s``) for the pool to be back at its minimum."""
    from autoscaler.timeline import read_timeline

    while time.time() < t_end:
        time.sleep(0.5)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        rows = [r for r in read_timeline(timeline) if r.decided] if timeline.exists() else []
        if rows and rows[-1].current <= min_workers and not rows[-1].draining:
            return
        time.sleep(1.0)


def record(trace: Trace, out: Path, *, model: str = "minilm", workers: int = 1, time_scale: float = 1.0,
           home: Path | None = None, settle_s: float = 120.0, job_timeout_s: float = 600.0) -> dict:
    from autoscaler.policy import PolicyConfig
    from autoscaler.signals import new_worker_cost
    from autoscaler.simulator.report import provenance
    from autoscaler.timeline import read_timeline
    from elastiq.local import stack
    from elastiq.local.procs import free_port
    from producer import Client

    config = PolicyConfig.from_env()
    with tempfile.TemporaryDirectory(prefix="elastiq-record-") as tmp:
        home = Path(home or tmp).resolve()
        saved = os.environ.get("ELASTIQ_HOME")
        os.environ["ELASTIQ_HOME"] = str(home)
        try:
            state = stack.up(home, workers=workers, models=[model], autoscale=True, flower=False,
                             redis_port=free_port(),
                             progress=lambda msg: print(f"[record] {msg}", file=sys.stderr))
            with Client(state.redis_url) as client:
                print(f"[record] driving {trace.jobs} jobs over {trace.duration_s * time_scale:.0f}s", file=sys.stderr)
                t0, sent = drive(client, model, trace, time_scale)
                jobs = collect(sent, t0, job_timeout_s)
                _settle(Path(state.timeline), t0 + trace.duration_s * time_scale, config.min_workers, settle_s)
                beats = _heartbeats(state.redis_url)
            rows = [x.to_dict() for x in read_timeline(Path(state.timeline)) if x.t >= t0 - 1.0]
        finally:
            stack.down(home, progress=lambda msg: None)
            if saved is None:
                os.environ.pop("ELASTIQ_HOME", None)
            else:
                os.environ["ELASTIQ_HOME"] = saved
    recording = {
        **provenance(["record"]), "trace": trace.name, "model": model, "workers_initial": workers,
        "time_scale": time_scale, "t0": t0, "duration_s": round(max(trace.duration_s * time_scale,
                                                                    (rows[-1]["t"] - t0) if rows else 0), 3),
        "policy_config": asdict(config), "sizes": [int(x) for x in trace.size],
        # what a new worker costs: less the first worker's one-time engine export, if it made one
        "cold_starts_s": sorted(round(new_worker_cost(b), 3) for b in beats.values() if b.cold_start_s),
        "slots_per_worker": max((b.slots or 0 for b in beats.values()), default=None),
        "jobs": jobs, "timeline": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "recording.json").write_text(json.dumps(recording) + "\n")
    return recording


def _heartbeats(redis_url: str) -> dict:
    from elastiq.local.procs import read_heartbeats
    from elastiq.redisconn import redis_client
    from elastiq.settings import Settings

    r = redis_client(Settings(redis_url=redis_url))
    try:
        return read_heartbeats(r)
    finally:
        r.close()


def recorded_trace(recording: dict) -> Trace:
    """The recording's actual submit times (t=0 at the client's start) and job sizes."""
    t = [j["submitted_s"] for j in recording["jobs"]]
    sizes = [recording["sizes"][j["i"]] for j in recording["jobs"]] if recording.get("sizes") else None
    return make_trace(f"recorded-{recording['trace']}", t, sizes, duration_s=recording["duration_s"])


def replay(recording: dict, calibration: str | None = None) -> tuple[dict, object, list[dict]]:
    """The recording's arrivals through the simulator; (comparison, SimResult, timeline rows)."""
    from dataclasses import replace

    from autoscaler.policy import PolicyConfig
    from autoscaler.simulator import compare, machine
    from autoscaler.simulator.model import SimParams

    config = PolicyConfig(**recording["policy_config"])
    params = SimParams.for_machine(machine.calibration(calibration))
    if recording.get("slots_per_worker"):
        params = replace(params, slots_per_worker=int(recording["slots_per_worker"]))
    _, rows = compare.queue_rows(recording["timeline"])
    t0 = recording["t0"]
    rows = [r for r in rows if r["t"] >= t0 - 1.0]
    if len(rows) < 2:
        raise ValueError("the recording has fewer than two autoscaler decisions in the run")
    rows[0] = dict(rows[0], t=t0)           # the comparison's t=0 is the client's start
    trace = recorded_trace(recording)
    waits = [j["wait_s"] for j in recording["jobs"] if "wait_s" in j]
    result = compare.replay(rows, trace, params, config)
    return {"recording_commit": recording.get("commit"), "trace": recording["trace"],
            "failed_jobs": sum(1 for j in recording["jobs"] if "error" in j),
            **compare.compare(rows, result, waits)}, result, rows


def saturated_rates(recording: dict, min_waiting: int = 300) -> dict[int, dict]:
    """Jobs started per second while the pool was saturated, by ready workers: for every
    timeline row with at least ``min_waiting`` jobs waiting (about half a second of work for
    two workers: starts are bounded by the workers, not by arrivals), the starts in the
    second before it. ``{ready: {"jobs_per_s": median, "samples": n}}``."""
    started = np.sort(np.array([j["started_s"] for j in recording["jobs"] if "started_s" in j]))
    by_ready: dict[int, list[int]] = {}
    for row in recording["timeline"]:
        if (row.get("waiting") or 0) >= min_waiting and row.get("ready"):
            t = row["t"] - recording["t0"]
            n = int(np.searchsorted(started, t) - np.searchsorted(started, t - 1.0))
            by_ready.setdefault(int(row["ready"]), []).append(n)
    return {k: {"jobs_per_s": float(np.median(v)), "samples": len(v)} for k, v in sorted(by_ready.items())}


def calibration_from(recording: dict, base, min_waiting: int = 300) -> dict:
    """``base`` (a :class:`~autoscaler.simulator.machine.Calibration`) with one worker's and
    the host's saturated rates taken from a live recording instead of the benchmarks."""
    rates = saturated_rates(recording, min_waiting)
    if not rates:
        raise ValueError(f"the recording never had {min_waiting}+ jobs waiting: no saturated interval to measure")
    cal = base.as_dict()
    where = f"live recording of trace {recording['trace']} at {str(recording.get('commit'))[:7]}"
    host = max(rates, key=lambda k: rates[k]["jobs_per_s"])
    cal["host_jobs_per_s"] = rates[host]["jobs_per_s"]
    cal["sources"] = {**cal["sources"], "host_jobs_per_s": (
        f"{where}: median jobs started/s with {min_waiting}+ waiting and {host} worker(s) ready "
        f"({rates[host]['samples']} samples)")}
    if 1 in rates:
        cal["worker_jobs_per_s"] = rates[1]["jobs_per_s"]
        cal["sources"]["worker_jobs_per_s"] = (f"{where}: the same with 1 worker ready "
                                               f"({rates[1]['samples']} samples)")
    cal["cold_start_s"] = list(cal["cold_start_s"])
    return cal


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="elastiq simulate", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="a live run of a trace against `elastiq up --autoscale`")
    r.add_argument("--trace", required=True, help="built-in name or a trace file")
    r.add_argument("--out", type=Path, required=True, help="folder for recording.json")
    r.add_argument("--model", default="minilm")
    r.add_argument("--workers", type=int, default=1, help="workers `up` starts with")
    r.add_argument("--time-scale", type=float, default=1.0, help="stretch (>1) or compress (<1) the trace's times")
    r.add_argument("--settle-s", type=float, default=120.0, help="wait at most this for the pool to scale back in")
    r.add_argument("--save-trace", type=Path, help="also write the submit times as a trace file")
    p2 = sub.add_parser("replay", help="replay a recording in the simulator and compare")
    p2.add_argument("recording", type=Path)
    p2.add_argument("--png", type=Path, help="live and simulated workers, queue and waits over time")
    p2.add_argument("--json", type=Path, help="write the comparison here")
    p2.add_argument("--calibration", help="a bench-style directory or calibration JSON (default: docs/sim/calibration)")
    p3 = sub.add_parser("calibrate", help="a calibration JSON whose worker and host rates come from a recording")
    p3.add_argument("recording", type=Path)
    p3.add_argument("--out", type=Path, required=True, help="the calibration JSON to write")
    p3.add_argument("--calibration", help="the rest of the calibration (default: docs/sim/calibration)")
    p3.add_argument("--min-waiting", type=int, default=300, help="jobs waiting for a reading to count as saturated")
    return p


def _calibrate(args) -> int:
    from autoscaler.simulator import machine

    try:
        cal = calibration_from(json.loads(args.recording.read_text()), machine.calibration(args.calibration),
                               args.min_waiting)
    except (OSError, ValueError, KeyError) as exc:
        print(f"elastiq simulate calibrate: {exc}", file=sys.stderr)
        return RET_USAGE
    args.out.write_text(json.dumps(cal, indent=2) + "\n")
    print(f"worker {cal['worker_jobs_per_s']:.0f} jobs/s, host {cal['host_jobs_per_s']:.0f} jobs/s -> {args.out}")
    return RET_OK


def main(argv=None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.cmd == "record":
        try:
            trace = load(args.trace)
        except (FileNotFoundError, ValueError) as exc:
            print(f"elastiq simulate record: {exc}", file=sys.stderr)
            return RET_USAGE
        rec = record(trace, args.out, model=args.model, workers=args.workers, time_scale=args.time_scale,
                     settle_s=args.settle_s)
        failed = sum(1 for j in rec["jobs"] if "error" in j)
        print(f"recorded {len(rec['jobs'])} jobs ({failed} failed), {len(rec['timeline'])} timeline rows "
              f"-> {args.out / 'recording.json'}")
        if args.save_trace:
            save(recorded_trace(rec), args.save_trace)
            print(f"trace -> {args.save_trace}")
        return RET_OK
    if args.cmd == "calibrate":
        return _calibrate(args)
    try:
        recording = json.loads(args.recording.read_text())
        result, sim, rows = replay(recording, args.calibration)
    except (OSError, ValueError, KeyError) as exc:
        print(f"elastiq simulate replay: {exc}", file=sys.stderr)
        return RET_USAGE
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.png:
        from autoscaler.simulator.plot import fidelity

        print(fidelity(recording, rows, sim, result, args.png))
    return RET_OK
