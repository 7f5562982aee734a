"""Serving a published model version, and switching to a new one between batches.

A ``classify`` model whose source is ``store:<name>`` is served from the model store's
*current* version of ``<name>`` (elastiq/modelstore.py): its cloud ONNX graph, checked
(every file's sha256, then parity on the recorded reference texts) before it serves a
single job. A watcher thread polls ``elastiq:current:<name>`` (every
``ELASTIQ_VERSION_POLL_S``, default 0.5 s) and also wakes on the
``elastiq:model-updates`` channel; when the current version changes -- a publish or a
rollback -- it loads and checks the new one *in the background* while the old one keeps
serving, then swaps it in. A batch runs on the version its :meth:`encode` pinned (the
batcher's and the suspect runner's threads each pin their own; :meth:`forward` uses the
pinned one), so the switch happens between batches: a batch is never split across
versions and no job waits or is dropped. A version failing its checks is
refused: the old one keeps serving, and the reason is in the log and the heartbeat
(``refused``). Every output carries the version that computed it; the committer writes
it into the result as ``model_version``.
"""

from __future__ import annotations

import json
import logging
import os
import threading

from elastiq import contract, modelstore
from elastiq.errors import ModelLoadError, ModelVersionError
from elastiq.redisconn import redis_client
from elastiq.registry import ModelSpec
from elastiq.settings import Settings
from workers.runtime import ClassifyRuntime

log = logging.getLogger(__name__)


class Loaded:
    def __init__(self, version: str, model: modelstore.OnnxClassifier):
        self.version = version
        self.model = model


class VersionedRuntime(ClassifyRuntime):
    kind = "classify"
    engine = "onnx"

    def __init__(self, spec: ModelSpec, threads: int = 1):
        self.spec, self.name, self.threads = spec, spec.name, threads
        self.store_name = spec.source[len("store:"):]
        self.root = modelstore.store_root()
        self.redis = redis_client(Settings.from_env())
        self.poll_s = float(os.environ.get("ELASTIQ_VERSION_POLL_S", "0.5"))
        self.refused: dict[str, str] = {}
        self.switches = 0
        self._local = threading.local()
        self._wake = threading.Event()
        self.active = self._first_servable()
        self.backend = _Labels(dict(enumerate(self.active.model.labels)))    # what postprocess reads
        self._thread = threading.Thread(target=self._watch, name=f"versions-{spec.name}", daemon=True)
        self._thread.start()

    def _first_servable(self) -> Loaded:
        """The current version; if it is refused, the newest earlier one that passes (a worker
        started while a corrupt version is current serves the last good one, never the bad)."""
        current = self.redis.get(contract.current_key(self.store_name))
        if not current:
            raise ModelLoadError(f"model {self.name!r}: no published version of {self.store_name!r} "
                                 "(`elastiq models publish NAME VERSION`)")
        for version in [current, *self.redis.lrange(contract.history_key(self.store_name), 0, -1)]:
            try:
                return self._load(version)
            except (ModelVersionError, OSError) as exc:
                self.refused[version] = str(exc)
                log.error("model %s: version %s refused: %s", self.name, version, exc)
        raise ModelLoadError(f"model {self.name!r}: every published version is refused: {self.refused}")

    def _load(self, version: str) -> Loaded:
        directory = modelstore.version_dir(self.store_name, version, self.root)
        if not directory.is_dir():
            raise ModelVersionError(f"version {version!r} is not in the model store {directory.parent}")
        manifest = modelstore.verify(directory)
        model = modelstore.parity(directory, manifest, "cloud", self.threads)
        log.info("model %s: version %s loaded and checked", self.name, version)
        return Loaded(version, model)

    # -- the watcher thread

    def _watch(self) -> None:
        threading.Thread(target=self._listen, name=f"versions-sub-{self.name}", daemon=True).start()
        while True:
            self._wake.wait(self.poll_s)
            self._wake.clear()
            try:
                self.check_once()
            except Exception as exc:  # noqa: BLE001 - Redis away: keep serving, look again
                log.warning("model %s: cannot read the current version: %s", self.name, exc)

    def _listen(self) -> None:
        while True:
            try:
                sub = self.redis.pubsub(ignore_subscribe_messages=True)
                sub.subscribe(contract.MODEL_UPDATES)
                for message in sub.listen():
                    if json.loads(message["data"]).get("name") == self.store_name:
                        self._wake.set()
            except Exception:  # noqa: BLE001 - polling still covers it
                threading.Event().wait(1.0)

    def check_once(self) -> str | None:
        """Load the current version if it is new (in this thread); the version switched to."""
        target = self.redis.get(contract.current_key(self.store_name))
        if not target or target == self.active.version or target in self.refused:
            return None
        try:
            loaded = self._load(target)
        except (ModelVersionError, OSError) as exc:
            self.refused[target] = str(exc)
            log.error("model %s: version %s refused, still serving %s: %s", self.name, target,
                      self.active.version, exc)
            return None
        self.backend = _Labels(dict(enumerate(loaded.model.labels)))
        self.active = loaded          # the next batch's encode() pins it; a running batch keeps its own
        self.switches += 1
        log.info("model %s: now serving version %s", self.name, target)
        return target

    # -- the batcher's side

    def encode(self, texts):
        self._local.pinned = pinned = self.active      # this thread's batch runs on one version
        return pinned.model.tokenize(texts)

    def forward(self, ids):
        pinned = getattr(self._local, "pinned", None) or self.active
        probs = pinned.model.run(ids)
        return [(row, pinned.version) for row in probs]

    def postprocess(self, outputs, params):
        return super().postprocess([row for row, _ in outputs], params)

    @staticmethod
    def version_of(outputs) -> str | None:
        versions = {v for _, v in outputs}
        return versions.pop() if len(versions) == 1 else ",".join(sorted(versions)) or None

    def describe(self) -> dict:
        return {"kind": self.kind, "engine": self.engine, "quantize": None, "fallback_reason": None,
                "version": self.active.version, "store_name": self.store_name,
                "switches": self.switches,
                "refused": dict(list(self.refused.items())[-5:])}


class _Labels:
    def __init__(self, labels):
        self.labels = labels
