"""``elastiq simulate readme [--dir docs/sim]``: write docs/sim/README.md from the reports.

Reads ``fresh4.json`` .. ``fresh.json``, ``heldout.json`` and ``dev.json``
(written by ``elastiq simulate --set <that set> --out docs/sim``) and ``notes.md``
(hand-written, appended as is); every figure in the README comes from the JSON, with the
commit and settings the JSON recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from autoscaler.simulator.machine import ROOT

SETS = (("fresh4", "Fresh set 4 (run before and with the worker rate's median, since reverted: first-runs/; seen since)"),
        ("fresh3", "Fresh set 3 (its one clean run is in first-runs/; seen since)"),
        ("fresh2", "Fresh set 2 (its one clean run is in first-runs/; seen since)"),
        ("fresh", "Fresh set 1 (its one clean run is in first-runs/; seen since)"),
        ("heldout", "Held-out traces (never used to tune the policy; seen since)"),
        ("dev", "Development traces (the policy's defaults were tuned on these)"))
TARGET_NAMES = {"worker_seconds_vs_static": "worker-s <= 0.6x static", "p95_vs_keda": "p95 <= 0.5x KEDA",
                "p95_vs_keda_tuned": "p95 <= 1x tuned KEDA", "not_dominated": "not dominated",
                "direction_changes": "direction changes"}


def _f(x, fmt="{:.2f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def overview(report: dict) -> list[str]:
    rows = []
    for name, e in report["traces"].items():
        by = {s["policy"]: s for s in e["summaries"]}
        el, vs = by.get("elastiq"), e.get("ratios", {}).get("vs", {})
        if el is None:
            continue
        t = e.get("targets", {})
        rows.append([name, str(e["jobs"]), str(e["load_phases"]), f"{el['worker_seconds']:.0f}",
                     _f(vs.get("static", {}).get("worker_seconds")), f"{el['wait_p95_s']:.2f}",
                     _f(vs.get("keda", {}).get("p95_wait")), _f(vs.get("keda-tuned", {}).get("p95_wait")),
                     _f(vs.get("keda", {}).get("p95_latency")), f"{el['direction_changes']}",
                     ", ".join(e.get("dominated_by", [])) or "none",
                     "met" if e.get("targets_met") else "missed: " + ", ".join(
                         TARGET_NAMES.get(k, k) + (" (unattainable here)" if v.get("attainable") is False else "")
                         for k, v in t.items() if not v["ok"])])
    return _table(["trace", "jobs", "load phases", "elastiq worker-s", "x static", "p95 wait s", "x KEDA",
                   "x tuned KEDA", "p95 latency x KEDA", "direction changes", "dominated by", "targets"], rows)


def trace_section(name: str, e: dict) -> list[str]:
    out = [f"#### {name}", "", f"{e['jobs']} jobs over {e['duration_s']:.0f} s, {e['load_phases']} load phase(s)."]
    if e.get("png"):
        out += ["", f"![{name}]({e['png']})"]
    rows = [[s["policy"], f"{s['worker_seconds']:.0f}", f"{s['wait_p50_s']:.3f}", f"{s['wait_p95_s']:.3f}",
             f"{s['wait_p99_s']:.3f}", _f(s.get("latency_p95_s"), "{:.3f}"), str(s["over_slo"]),
             str(s["scale_events"]), str(s["direction_changes"]),
             str(s["max_workers_seen"])] for s in e["summaries"]]
    out += [""] + _table(["policy", "worker-s", "p50 wait s", "p95 wait s", "p99 wait s", "p95 latency s", "over SLO",
                          "scale events", "dir changes", "max workers"], rows)
    if e.get("warm_pools"):
        out += ["", "Warm fixed pools (that many workers from t=0, no scaling; the floor a p95 target is "
                    "judged attainable against): " + ", ".join(
                        f"{n}: p95 {w['wait_p95_s']:.2f} s, {w['worker_seconds']:.0f} worker-s"
                        for n, w in e["warm_pools"].items()) + "."]
    if "ratios" in e:
        vs = e["ratios"]["vs"]
        out += ["", "elastiq against each baseline (worker-seconds ratio, p95 wait ratio, p95 latency ratio, "
                    "direction changes difference):", ""]
        out += _table(["baseline", "worker-s", "p95 wait", "p95 latency", "dir changes"],
                      [[n, _f(v["worker_seconds"], "{:.3f}"), _f(v["p95_wait"], "{:.3f}"),
                        _f(v.get("p95_latency"), "{:.3f}"), f"{v['direction_changes']:+d}"] for n, v in vs.items()])
        best = e["ratios"]["best"]
        out += ["", "Best baseline per measure: " + "; ".join(
            f"{m.replace('_', ' ')}: {b['baseline']} ({b['value']}; elastiq "
            + (f"{b['difference']:+d}" if "difference" in b else f"{_f(b['ratio'], '{:.3f}')}x") + ")"
            for m, b in best.items()) + "."]
        out += ["", "Targets: " + "; ".join(
            f"{'ok' if t['ok'] else '**MISSED**'} {TARGET_NAMES.get(k, k)} ({t['detail']})"
            for k, t in e["targets"].items()) + "."]
    return out + [""]


def provenance(report: dict) -> list[str]:
    dirty = " (with uncommitted changes)" if report.get("dirty") else ""
    return [f"- run: `{report.get('command')}` at {report.get('generated_at')}, commit "
            f"`{report.get('commit')}`{dirty}"]


def machine_section(report: dict) -> list[str]:
    cal = report.get("calibration")
    if not cal:
        return ["The idealised model (no machine) was used.", ""]
    src = cal.get("sources", {})
    rows = [[k, str(v), src.get(k, "")] for k, v in cal.items() if k != "sources"]
    p = report["params"]
    return _table(["calibration", "value", "source"], rows) + [
        "", f"Pool: {p['slots_per_worker']} slots per worker, {p['min_workers']}-{p['max_workers']} workers, "
            f"wait SLO {p['slo_wait_s']} s, control tick {p['tick_s']} s, service-time cv {p['service_cv']}, "
            f"seed {p['seed']}, a loading worker burns {p['cold_start_cpu']} core(s), "
            f"memory reserve {p['memory_reserve_mb']} MB.",
        "", "Policy settings (`ELASTIQ_AUTOSCALE_*` defaults unless the run set them): " + ", ".join(
            f"`{k}={v}`" for k, v in report["policy_config"].items()) + ".", ""]


def render(reports: dict[str, dict], notes: str | None = None) -> str:
    out = ["# Scaling-policy simulation: results", "",
           "Generated by `elastiq simulate readme` from the JSON reports in this folder; edit `notes.md`, "
           "not this file. Regenerate:", "", "```"]
    out += [f"elastiq simulate --set {key} --out docs/sim" for key, _ in SETS]
    out += ["elastiq simulate readme", "```", ""]
    for key, _ in SETS:
        if key in reports:
            out += provenance(reports[key])
    first = next(iter(reports.values()))
    out += ["", "## The machine", ""] + machine_section(first)
    for key, title in SETS:
        if key not in reports:
            continue
        r = reports[key]
        out += [f"## {title}", ""]
        if r.get("png"):
            out += [f"![{key}]({r['png']})", ""]
        out += overview(r) + [""]
        for name, e in r["traces"].items():
            out += trace_section(name, e)
    if notes:
        out += [notes.strip(), ""]
    return "\n".join(out)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "readme":
        argv = argv[1:]
    p = argparse.ArgumentParser(prog="elastiq simulate readme", description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=ROOT / "docs" / "sim")
    args = p.parse_args(argv)
    reports = {k: json.loads((args.dir / f"{k}.json").read_text()) for k, _ in SETS
               if (args.dir / f"{k}.json").exists()}
    if not reports:
        names = ", ".join(f"{key}.json" for key, _ in SETS)
        print(f"elastiq simulate readme: none of {names} in {args.dir}", file=sys.stderr)
        return 2
    notes = args.dir / "notes.md"
    out = args.dir / "README.md"
    out.write_text(render(reports, notes.read_text() if notes.exists() else None))
    print(out)
    return 0
