"""The sustained benchmark's windows and ratios, from samples written out by hand."""

from __future__ import annotations

import pytest

from benchmarks.sustained import summarize


def samples(rates: list[float], rewriting: set[int], mb_per_job: float = 0.005) -> list[dict]:
    out, done, rewrites = [], 0, 0
    for t, rate in enumerate(rates):
        rewrites += t in rewriting and (t - 1) not in rewriting
        out.append({"t": float(t), "done": done, "memory_mb": done * mb_per_job,
                    "rewriting": t in rewriting, "rewrites": rewrites})
        done += rate
    return out


def test_windows_with_a_rewrite_are_compared_with_the_others_of_the_same_run():
    # 4 windows of 5 s at 800 jobs/s, one at 600 while a rewrite runs (seconds 11-13)
    rates = [800] * 10 + [600] * 5 + [800] * 6
    s = summarize(samples(rates, rewriting={11, 12, 13}), result_ttl_s=3600)
    assert [w["rewrite"] for w in s["windows"]] == [False, False, True, False]
    assert s["jobs_per_s_during_rewrite"] == 600 and s["jobs_per_s_otherwise"] == 800
    assert s["rewrite_ratio"] == 0.75 and s["rewrites"] == 1 and s["jobs_per_s_min_window"] == 600
    assert s["kb_per_job"] == pytest.approx(0.005 * 1024)
    assert s["redis_mb_at_result_ttl"] == round(0.005 * s["jobs_per_s"] * 3600)


def test_without_a_rewrite_there_is_no_ratio_and_a_flat_run_has_no_trend():
    s = summarize(samples([500] * 21, rewriting=set()), result_ttl_s=600)
    assert s["rewrite_ratio"] is None and s["rewrites"] == 0 and s["trend"] == 1.0


def test_a_run_that_slows_shows_it_in_the_trend():
    s = summarize(samples([800] * 10 + [600] * 10 + [400] * 11, rewriting=set()), result_ttl_s=600)
    assert s["trend"] == 0.5
