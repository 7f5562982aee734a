"""The live side of a replay: worker processes alive after each recorded decision."""

from __future__ import annotations

from autoscaler.simulator.compare import workers_alive


def row(current, desired, draining=0):
    return {"current": current, "desired": desired, "draining": draining}


def test_a_scale_in_counts_its_draining_worker_once():
    rows = [row(2, 2), row(2, 1, draining=1), row(1, 1, draining=1), row(1, 1)]
    # before, the decision (one kept + the one draining), still draining, gone
    assert workers_alive(rows).tolist() == [2, 2, 2, 1]


def test_a_scale_up_counts_from_the_next_row_and_old_rows_without_desired_count_current():
    assert workers_alive([row(1, 2), row(2, 2)]).tolist() == [1, 2]
    assert workers_alive([{"current": 3, "draining": 1}]).tolist() == [4]
