"""Cascade arithmetic and the threshold choice (validation-only, pure)."""

from __future__ import annotations

import pytest

from elastiq import cascade


def test_point_mixes_edge_and_cloud_answers():
    p = cascade.point(0.8, [0.9, 0.7, 0.95, 0.6], [True, False, False, True], [True, True, True, False])
    # local: 0 (right), 2 (wrong); escalated: 1 (cloud right), 3 (cloud wrong)
    assert p.accuracy == 0.5 and p.escalated == 0.5


def test_choose_threshold_least_escalation_within_target():
    conf = [0.99, 0.98, 0.97, 0.9, 0.8, 0.7, 0.6, 0.55]
    edge = [True, True, True, True, False, True, False, False]
    cloud = [True] * 7 + [False]            # cloud 0.875
    got = cascade.choose_threshold(conf, edge, cloud, target_drop=0.0)
    assert got["cascade_accuracy"] >= got["cloud_accuracy"]
    assert got["threshold"] == 0.9 and got["escalated"] == 0.5
    loose = cascade.choose_threshold(conf, edge, cloud, target_drop=0.2)
    assert loose["escalated"] < got["escalated"]


def test_all_cloud_is_always_available():
    got = cascade.choose_threshold([0.99, 0.99], [False, False], [True, True], 0.0)
    assert got["escalated"] == 1.0 and got["threshold"] > 1


def test_bad_lengths():
    with pytest.raises(ValueError):
        cascade.point(0.5, [0.5], [True, False], [True])
