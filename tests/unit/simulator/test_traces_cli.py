"""Trace files, the ``elastiq simulate`` CLI and the replay check against a recorded timeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autoscaler.simulator.cli import main
from autoscaler.simulator.compare import compare_to_timeline
from autoscaler.simulator.model import SimParams, simulate
from autoscaler.simulator.policies import ElastiqPolicy
from autoscaler.traces import BUILTIN, load, make_trace, save
from autoscaler.traces.generate import build, machine_scale, poisson
from autoscaler.traces.timeline import arrivals_from_timeline


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_trace_files_match_their_generator(name):
    stored, fresh = load(name), build(name, machine_scale())     # rates x calibrated / reference worker
    assert stored.jobs == fresh.jobs > 1000
    assert np.allclose(stored.t, fresh.t) and stored.duration_s == fresh.duration_s


def test_csv_and_json_lines_round_trip(tmp_path):
    t = make_trace("x", [0.5, 0.1, 2.0], size=[1, 3, 2], priority=[0, 9, 0], duration_s=10)
    back = load(save(t, tmp_path / "x.csv"))
    assert list(back.t) == [0.1, 0.5, 2.0] and list(back.size) == [3, 1, 2] and list(back.priority) == [9, 0, 0]
    assert back.duration_s == 10
    (tmp_path / "y.jsonl").write_text('{"t": 1.0}\n{"t": 0.5, "size": 4}\n')
    y = load(tmp_path / "y.jsonl")
    assert list(y.t) == [0.5, 1.0] and list(y.size) == [4, 1]
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.csv")


def test_arrivals_from_a_timeline():
    rows = [{"t": 100.0 + i, "queue": "q", "waiting": 0, "in_flight": 0, "current": 1, "desired": 1,
             "arrival_rate": 2.5} for i in range(11)]
    tr = arrivals_from_timeline(rows)
    assert tr.jobs == 25 and tr.duration_s == 10.0             # 2.5/s x 10 s, from t=0
    # no arrival_rate: flow balance -- growth of the backlog plus completions
    rows = [{"t": 0.0, "queue": "q", "waiting": 0, "in_flight": 10, "current": 1, "desired": 1,
             "service_time_s": 0.5},
            {"t": 1.0, "queue": "q", "waiting": 5, "in_flight": 10, "current": 1, "desired": 1,
             "service_time_s": 0.5}]
    assert arrivals_from_timeline(rows).jobs == 5 + 20


def _small_trace_file(tmp_path):
    trace = poisson("small", lambda t: np.where((t > 10) & (t < 25), 250.0, 15.0), 60.0, seed=9)
    return save(trace, tmp_path / "small.csv")


def test_cli_prints_a_table_and_writes_json_and_png(tmp_path, capsys):
    path = _small_trace_file(tmp_path)
    out_json, out_png = tmp_path / "o" / "sim.json", tmp_path / "o" / "sim.png"
    assert main(["--trace", str(path), "--json", str(out_json), "--png", str(out_png), "--cold-start-s", "3"]) == 0
    text = capsys.readouterr().out
    for name in ("elastiq", "keda", "keda-tuned", "celery", "ray", "static", "worker-s", "p95 wait",
                 "worker_seconds_vs_static", "best baseline"):
        assert name in text
    report = json.loads(out_json.read_text())
    assert report["params"]["cold_start_s"] == 3.0 and report["params"]["cold_start_samples"] == []
    assert report["calibration"]["cpus"] >= 1 and report["calibration"]["sources"]
    assert len(report["commit"]) == 40 and report["command"].startswith("elastiq simulate --trace")
    entry = report["traces"]["small"]
    summaries = entry["summaries"]
    assert [s["policy"] for s in summaries] == ["elastiq", "keda", "keda-tuned", "celery", "ray", "static"]
    assert set(entry["ratios"]["vs"]) == {"keda", "keda-tuned", "celery", "ray", "static"}
    assert set(entry["targets"]) == {"worker_seconds_vs_static", "p95_vs_keda", "p95_vs_keda_tuned",
                                     "not_dominated", "direction_changes"}
    assert all(s["completed"] == s["jobs"] for s in summaries)
    assert entry["png"] == out_png.name and out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["--trace", str(_small_trace_file(tmp_path)), "--policies", "elastiq,hpa"]) == 2
    assert main(["--trace", str(tmp_path / "nope.csv")]) == 2


def test_compare_to_timeline_on_a_synthetic_recording(tmp_path):
    """Record a simulated run in the controller's timeline format; replaying it must agree."""
    params = SimParams()
    trace = poisson("live", lambda t: np.where((t > 20) & (t < 60), 300.0, 20.0), 120.0, seed=11)
    policy = ElastiqPolicy.for_params(params)
    rows: list[dict] = []
    orig = policy.desired

    def recording(obs):
        desired = orig(obs)
        rows.append({"t": 1000.0 + obs.now, "queue": "elastiq.minilm", "waiting": obs.waiting,
                     "in_flight": obs.in_flight, "current": obs.workers, "desired": desired,
                     "oldest_age_s": obs.oldest_age_s, "arrival_rate": policy.rates.arrival_rate})
        return desired

    policy.desired = recording
    simulate(trace, policy, params)
    path = tmp_path / "timeline.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    result = compare_to_timeline(path)
    assert result["rows"] == len(rows) and result["queue"] == "elastiq.minilm"
    assert abs(result["jobs_derived"] - trace.jobs) / trace.jobs < 0.1
    assert result["replicas"]["mean_abs_diff"] < 0.5
    assert 0.8 < result["replicas"]["worker_seconds_ratio"] < 1.2
    assert result["replicas"]["max_sim"] == result["replicas"]["max_recorded"] == 4
    assert set(result["queue_wait"]) >= {"waiting_mean_recorded", "waiting_mean_sim", "oldest_age_p95_recorded_s",
                                         "oldest_age_p95_sim_s"}


def test_a_set_writes_its_report_pngs_and_the_readme_reads_them(tmp_path, monkeypatch, capsys):
    from autoscaler.simulator import cli

    path = _small_trace_file(tmp_path)
    monkeypatch.setitem(cli.SETS, "heldout", lambda: (str(path),))
    out = tmp_path / "sim"
    assert main(["--set", "heldout", "--out", str(out)]) == 0
    report = json.loads((out / "heldout.json").read_text())
    assert report["set"] == "heldout" and list(report["traces"]) == ["small"]
    assert report["png"] == "heldout.png" and (out / "heldout.png").exists()
    assert report["traces"]["small"]["png"] == "heldout-small.png" and (out / "heldout-small.png").exists()
    assert isinstance(report["all_targets_met"], bool)
    (out / "notes.md").write_text("## Notes\n\nhand-written.\n")
    assert main(["readme", "--dir", str(out)]) == 0
    text = (out / "README.md").read_text()
    el = next(s for s in report["traces"]["small"]["summaries"] if s["policy"] == "elastiq")
    assert report["commit"] in text and "## Held-out traces" in text and "hand-written." in text
    assert f"| elastiq | {el['worker_seconds']:.0f} |" in text and "![small](heldout-small.png)" in text
    assert "worker_jobs_per_s" in text and "Development traces" not in text
    # --require-targets turns a missed target into exit 1
    monkeypatch.setattr(cli, "score_trace", lambda *a, **k: {"load_phases": 1, "targets_met": False})
    assert main(["--trace", str(path), "--require-targets"]) == 1
