"""The edge client: answer what the light model is sure of, send the rest to the pool.

    edge = EdgeClient("sentiment")                 # fetches the current version's edge model
    for a in edge.classify(["a joyless slog", "not bad, though it drags"]):
        a["label"], a["source"], a["version"]      # source: "edge" or "cloud"

It runs the version's *edge* part -- a distilled student with fewer layers, int8 ONNX --
with onnxruntime + tokenizers only (no torch, no transformers). A text whose top
probability is ``>= threshold`` is answered locally; the others are escalated in one
round trip through the normal :class:`~producer.Client` to the pool's model serving the
same name (``cloud_model``), whose result names the version that answered it. The
threshold is the one chosen for the version on the validation split (its manifest's
``edge.threshold``: the least escalation keeping accuracy within the target of the cloud
model), unless given.

Fetching: the edge files and the manifest are copied from the model store into a local
cache (``$ELASTIQ_EDGE_CACHE``, default ``$ELASTIQ_HOME/edge``), then checked -- every
file's sha256 and the graph's parity on the recorded references -- before the first
answer; a version that fails is refused (:class:`ModelVersionError`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from elastiq import modelstore
from elastiq.errors import ModelVersionError


def edge_cache(env=None) -> Path:
    env = os.environ if env is None else env
    if env.get("ELASTIQ_EDGE_CACHE"):
        return Path(env["ELASTIQ_EDGE_CACHE"]).expanduser().resolve()
    return (Path(env.get("ELASTIQ_HOME", ".elastiq")).expanduser() / "edge").resolve()


def fetch(name: str, version: str, store: Path | None = None, cache: Path | None = None) -> Path:
    """Copy a version's edge part into the local cache (once); its checked local directory."""
    src = modelstore.version_dir(name, version, store)
    dst = (cache or edge_cache()) / name / version
    try:
        modelstore.verify(dst, prefix="edge/")
        return dst
    except ModelVersionError:
        shutil.rmtree(dst, ignore_errors=True)
    if not (src / "edge").is_dir():
        raise ModelVersionError(f"version {version!r} of {name!r} has no edge model in {src.parent}")
    tmp = dst.with_name(f".{version}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src / "edge", tmp / "edge")
    shutil.copy2(src / modelstore.MANIFEST, tmp / modelstore.MANIFEST)
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dst)
    return dst


class EdgeClient:
    def __init__(self, name: str, *, client=None, cloud_model: str | None = None, version: str | None = None,
                 threshold: float | None = None, store: Path | None = None, cache: Path | None = None,
                 threads: int = 1):
        self.name = name
        self.cloud_model = cloud_model or name
        self._client = client
        if version is None:
            from elastiq.modelstore import Versions

            version = Versions(self.client._redis, store).current(name)
            if not version:
                raise ModelVersionError(f"model {name!r} has no published version")
        self.version = version
        self.dir = fetch(name, version, store, cache)
        manifest = modelstore.verify(self.dir, prefix="edge/")
        self.model = modelstore.parity(self.dir, manifest, "edge", threads)
        self.threshold = float(threshold if threshold is not None else manifest["edge"]["threshold"])
        self.manifest = manifest

    @property
    def client(self):
        if self._client is None:
            from producer import Client

            self._client = Client()
        return self._client

    def local(self, texts: Sequence[str]):
        """The edge model's probabilities, one row per text, each text run alone: dynamic int8
        scales activations per batch, so a text's answer would otherwise depend on what it
        was batched with (and on padding); alone it is also cheapest per text here."""
        return self.model.predict(list(texts), batch=1)

    def classify(self, texts: Sequence[str], *, timeout: float | None = 60) -> list[dict]:
        """One answer per text: label, scores, confidence, source (edge|cloud), version, latency_ms."""
        t0 = time.perf_counter()
        probs = self.local(texts)
        local_ms = (time.perf_counter() - t0) * 1000 / max(1, len(texts))
        labels = self.model.labels
        answers: list[dict | None] = [None] * len(texts)
        escalate = []
        for i, row in enumerate(probs):
            conf = float(row.max())
            if conf >= self.threshold:
                answers[i] = {"label": labels[int(row.argmax())], "scores": _scores(labels, row), "confidence": conf,
                              "source": "edge", "version": self.version, "latency_ms": round(local_ms, 3)}
            else:
                escalate.append(i)
        if escalate:
            t1 = time.perf_counter()
            jobs = self.client.submit_many(self.cloud_model, [[texts[i]] for i in escalate])
            for i, job in zip(escalate, jobs):
                res = job.result(timeout=timeout)
                out = res.outputs[0]
                answers[i] = {"label": out["label"], "scores": out["scores"],
                              "confidence": max(out["scores"].values()), "source": "cloud",
                              "version": res.model_version, "edge_confidence": float(probs[i].max()),
                              "latency_ms": round(local_ms + (time.perf_counter() - t1) * 1000, 3)}
        return answers

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _scores(labels, row) -> dict:
    return {labels[k]: round(float(row[k]), 6) for k in range(len(labels))}


def main(argv=None) -> int:
    """``elastiq edge NAME TEXT... [--threshold X] [--cloud-model M]``: classify on the edge,
    escalating what it is unsure of; one JSON answer per line."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="elastiq edge", description="edge client: local when sure, else the pool")
    p.add_argument("name")
    p.add_argument("texts", nargs="+")
    p.add_argument("--threshold", type=float)
    p.add_argument("--cloud-model")
    a = p.parse_args(argv)
    edge = EdgeClient(a.name, cloud_model=a.cloud_model, threshold=a.threshold)
    try:
        for text, answer in zip(a.texts, edge.classify(a.texts)):
            print(json.dumps({"text": text, **answer}))
    finally:
        edge.close()
    return 0
