"""The ``train`` kind: a worker serving the ``train`` queue fine-tunes (training/, torch).

A train job's one input is its spec (elastiq/trainspec.py), checked again here. The job
runs in the model's batcher thread like any forward pass, so the worker's slots,
heartbeat, reservations, drain and time limits apply unchanged (a training worker gets
``ELASTIQ_TRAIN_TIME_LIMIT_S`` as its job time limit: workers/main.py). Progress
(phase, epoch, step, loss, validation accuracy) is written as JSON on the job's record
(``elastiq:job:<id>`` field ``progress``), where the client's progress bar reads it.
With ``publish`` the new version is made current at once (elastiq/modelstore.py).

Only processes that serve ``train`` import torch through this module: serving workers
never load it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

from elastiq import contract, modelstore, trainspec
from elastiq.jobrecord import JobRecord
from elastiq.redisconn import redis_client
from elastiq.registry import ModelSpec, Registry
from elastiq.settings import Settings
from workers.runtime import Runtime

log = logging.getLogger(__name__)


class TrainRuntime(Runtime):
    kind = "train"
    engine = "torch"

    def __init__(self, spec: ModelSpec, threads: int = 1):
        super().__init__(spec, threads)
        self.threads = threads
        self.registry = Registry.from_env()
        self.redis = redis_client(Settings.from_env())
        self._texts: dict[int, str] = {}
        self._n = itertools.count()
        self._lock = threading.Lock()
        self.last: dict = {}

    def encode(self, texts):
        out = []
        with self._lock:
            for t in texts:
                k = next(self._n)
                self._texts[k] = t
                out.append([k])
        return out

    def forward(self, ids):
        with self._lock:
            texts = [self._texts.pop(seq[0]) for seq in ids]
        return [self._train(t) for t in texts]

    def _train(self, text: str) -> dict:
        from training import run

        spec = trainspec.parse(text, self.registry)
        started = time.monotonic()
        manifest = run.run(spec, self.registry, progress=lambda p: self._progress(spec.run_id, p),
                           threads=self.threads)
        versions = modelstore.Versions(self.redis)
        versions.register(spec.name, manifest["version"])
        published = versions.publish(spec.name, manifest["version"]) if spec.publish else None
        self._progress(spec.run_id, {"phase": "done", "version": manifest["version"]})
        metrics = {k: v for k, v in manifest["metrics"].items() if not k.endswith("history")}
        self.last = {"version": manifest["version"], "name": spec.name}
        return {"name": spec.name, "version": manifest["version"], "metrics": metrics,
                "history": {k: v for k, v in manifest["metrics"].items() if k.endswith("history")},
                "edge": {k: manifest["edge"][k] for k in ("threshold", "layers", "quantize")} if "edge" in manifest
                else None, "published": published is not None, "train_s": round(time.monotonic() - started, 1)}

    def _progress(self, run_id: str, p: dict) -> None:
        if not run_id:
            return
        try:
            self.redis.hset(contract.job_key(run_id), mapping=JobRecord(progress={**p, "at": time.time()}).to_hash())
        except Exception as exc:  # noqa: BLE001 - progress is best effort; training goes on
            log.warning("cannot write training progress: %s", exc)

    def describe(self) -> dict:
        return {"kind": self.kind, "engine": self.engine, **({"last_trained": self.last} if self.last else {})}
