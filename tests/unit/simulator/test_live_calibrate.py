"""``elastiq simulate calibrate``: the worker and host rates a recording's saturated seconds show."""

from __future__ import annotations

import json

import pytest

from autoscaler.simulator import machine
from autoscaler.simulator.live import calibration_from, main, saturated_rates


def recording(t0: float = 1000.0) -> dict:
    """10 s at 1 worker starting 300 jobs/s, then 10 s at 2 workers starting 500/s; jobs wait
    (400 of them) only in seconds 3-9 and 13-19, so only those readings count."""
    jobs, k = [], 0
    for second in range(20):
        rate = 300 if second < 10 else 500
        for i in range(rate):
            jobs.append({"i": k, "submitted_s": second, "started_s": second + i / rate})
            k += 1
    timeline = [{"t": t0 + s, "ready": 1 if s < 10 else 2, "waiting": 400 if s % 10 >= 3 else 10}
                for s in range(1, 21)]
    return {"trace": "synthetic", "commit": "abc1234def", "t0": t0, "jobs": jobs, "timeline": timeline}


def test_saturated_seconds_by_ready_workers():
    rates = saturated_rates(recording())
    assert rates == {1: {"jobs_per_s": 300.0, "samples": 7}, 2: {"jobs_per_s": 500.0, "samples": 7}}


def test_a_calibration_with_the_recordings_rates_and_its_sources(tmp_path):
    base = machine.calibration()
    cal = calibration_from(recording(), base)
    assert cal["worker_jobs_per_s"] == 300.0 and cal["host_jobs_per_s"] == 500.0
    assert "synthetic" in cal["sources"]["host_jobs_per_s"] and "abc1234" in cal["sources"]["worker_jobs_per_s"]
    assert cal["cold_start_s"] == list(base.cold_start_s)
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(recording()))
    assert main(["calibrate", str(path), "--out", str(tmp_path / "cal.json")]) == 0
    assert machine.calibration(tmp_path / "cal.json").host_jobs_per_s == 500.0   # loads as a calibration


def test_a_recording_that_never_saturated_is_refused(tmp_path):
    quiet = recording()
    for row in quiet["timeline"]:
        row["waiting"] = 0
    with pytest.raises(ValueError, match="never had 300"):
        calibration_from(quiet, machine.calibration())
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(quiet))
    assert main(["calibrate", str(path), "--out", str(tmp_path / "cal.json")]) == 2
