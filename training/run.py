"""One training job, end to end: data -> fine-tune -> evaluate -> distil -> version.

:func:`run` is what the ``train`` worker executes for a :class:`~elastiq.trainspec.TrainSpec`.
Progress goes to ``progress(dict)`` (the worker writes it on the job record).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from elastiq import datasets, modelstore
from elastiq.registry import Registry
from elastiq.trainspec import TrainSpec
from training import artifact, loop
from training import model as tm

log = logging.getLogger(__name__)


def load_data(spec: TrainSpec, root: Path | None = None):
    meta = datasets.prepare(spec.dataset, root)
    train = datasets.load(spec.dataset, "train", root)
    if spec.max_train:
        train = datasets.stratified_head(train, spec.max_train)
    val = datasets.load(spec.dataset, "validation", root)
    if spec.max_eval:
        val = datasets.stratified_head(val, spec.max_eval)
    return meta, train, val


def run(spec: TrainSpec, registry: Registry, *, progress: Callable[[dict], None] = lambda _: None,
        store: Path | None = None, data_root: Path | None = None, threads: int | None = None) -> dict:
    started = time.monotonic()
    if threads:
        torch.set_num_threads(threads)
    base = registry.get(spec.base)
    meta, train, val = load_data(spec, data_root)
    progress({"phase": "load", "train": len(train), "validation": len(val)})
    tok, cloud = tm.load_base(base.resolve_path())
    hist = loop.fit(cloud, tok, train, val, epochs=spec.epochs, lr=spec.lr, batch_size=spec.batch_size,
                    max_len=spec.max_seq_length, seed=spec.seed, progress=progress)
    val_probs = loop.predict(cloud, tok, [e.text for e in val], spec.max_seq_length)
    labels = [e.label for e in val]
    metrics = {"val_accuracy": round(loop.accuracy(val_probs, labels), 5), "train_size": len(train),
               "val_size": len(val), "cloud_history": hist["history"]}
    edge = None
    if spec.student_layers and spec.student_layers < cloud.encoder.config.num_hidden_layers:
        teacher = loop.predict(cloud, tok, [e.text for e in train], spec.max_seq_length)
        edge = tm.student_of(cloud, spec.student_layers)
        ehist = loop.fit(edge, tok, train, val, epochs=spec.student_epochs, lr=spec.student_lr,
                         batch_size=spec.batch_size, max_len=spec.max_seq_length, seed=spec.seed,
                         phase="distil", progress=progress, teacher_probs=teacher)
        metrics["edge_history"] = ehist["history"]
    progress({"phase": "export"})
    lineage = {"base": spec.base, "base_source": base.source, "dataset": spec.dataset,
               "dataset_source": meta["source"], "split_rule": meta["rule"],
               "splits": {s: {k: meta["splits"][s][k] for k in ("size", "sha256")} for s in datasets.SPLITS},
               "hyper_parameters": spec.hyper(), "git_commit": artifact.git_commit(),
               "torch": torch.__version__, "run_id": spec.run_id}
    manifest = artifact.build(store or modelstore.store_root(), spec.name, cloud, edge, tok,
                              labels=list(datasets.LABEL_NAMES), max_len=spec.max_seq_length, val=val,
                              cloud_val_probs=np.asarray(val_probs), metrics=metrics, lineage=lineage,
                              target_drop=spec.target_drop)
    log.info("trained %s %s in %.0fs: %s", spec.name, manifest["version"], time.monotonic() - started,
             {k: v for k, v in manifest["metrics"].items() if not k.endswith("history")})
    return manifest
