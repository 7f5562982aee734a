"""The live-vs-simulator tooling end to end: `elastiq up --autoscale`, a real client driving a
trace open-loop, the recording, and its replay in the simulator (model-free debug worker:
this checks the tooling, not the fidelity figures, which need the real model on a quiet host)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autoscaler.simulator.live import main, record, recorded_trace, replay
from autoscaler.traces import save
from autoscaler.traces.generate import poisson

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_record_then_replay(tmp_path, models_env, monkeypatch):
    monkeypatch.setenv("ELASTIQ_AUTOSCALE_STABILISATION_MIN_S", "3")
    trace = poisson("tiny-burst", lambda t: np.where((t >= 2) & (t < 6), 80.0, 4.0), 10.0, seed=5)
    rec = record(trace, tmp_path / "run", model="debug", settle_s=40)
    on_disk = json.loads((tmp_path / "run" / "recording.json").read_text())
    assert on_disk["jobs"] == rec["jobs"] and len(rec["jobs"]) == trace.jobs
    assert not [j for j in rec["jobs"] if "error" in j]
    submitted = np.array([j["submitted_s"] for j in rec["jobs"]])
    assert np.all(submitted + 0.5 >= trace.t)                     # open loop: never before its arrival time
    assert rec["policy_config"]["stabilisation_min_s"] == 3.0 and len(rec["commit"]) == 40
    assert len(rec["timeline"]) >= 5 and rec["cold_starts_s"]
    again = recorded_trace(rec)
    assert again.jobs == trace.jobs and again.duration_s >= trace.duration_s

    result, sim, rows = replay(rec)
    assert result["jobs"] == trace.jobs and result["failed_jobs"] == 0
    assert set(result["fidelity"]) == {"worker_seconds", "p95_wait"}
    assert result["replicas"]["worker_seconds_recorded"] > 0 and result["queue_wait"]["live_job_wait_p95_s"] is not None

    path = tmp_path / "run" / "recording.json"
    png, out = tmp_path / "fidelity.png", tmp_path / "fidelity.json"
    assert main(["replay", str(path), "--png", str(png), "--json", str(out)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and json.loads(out.read_text())["jobs"] == trace.jobs
    save(again, tmp_path / "recorded.csv.gz")
