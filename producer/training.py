"""``Client.train(...)``: a fine-tuning job, and a handle that shows its progress.

    job = client.train(dataset="rotten_tomatoes", base="minilm", epochs=2, lr=5e-5)
    job.progress()                      # {"phase": "train", "epoch": 1, "step": 120, "steps": 646, "loss": ...}
    out = job.wait(progress=True)       # a progress bar (tqdm) until the version is written
    out["version"], out["metrics"]["val_accuracy"]

The spec is checked (elastiq/trainspec.py) before anything is queued. No torch here.
"""

from __future__ import annotations

import json
import time
import uuid

from elastiq import contract, jobrecord, trainspec
from elastiq.errors import JobTimeoutError, WireFormatError
from elastiq.jobrecord import JobRecord
from producer.job import Job


class TrainJob(Job):
    __slots__ = ()

    def progress(self) -> dict:
        """The latest progress the training worker wrote ({} before it starts)."""
        raw = self._client._redis.hget(contract.job_key(self.id), jobrecord.PROGRESS)
        try:
            return JobRecord.from_hash({jobrecord.PROGRESS: raw}).progress or {}
        except WireFormatError:
            return {}

    def wait(self, timeout: float | None = None, *, progress: bool = True, poll_s: float = 0.5) -> dict:
        """Wait for the new version; show a progress bar meanwhile. Returns the job's output
        (name, version, metrics, edge, published); raises the worker's typed error."""
        end = None if timeout is None else time.monotonic() + timeout
        bar = _Bar() if progress else None
        try:
            while True:
                try:
                    result = self.result(timeout=poll_s)
                    break
                except JobTimeoutError:
                    if end is not None and time.monotonic() >= end:
                        raise JobTimeoutError(f"training job {self.id} has not finished after {timeout}s "
                                              f"(last progress: {self.progress()})") from None
                    if bar:
                        bar.show(self.progress())
        finally:
            if bar:
                bar.close()
        return result.outputs[0]


class _Bar:
    """A tqdm bar over the steps of the current phase (train, then distil)."""

    def __init__(self):
        self.bar = None
        self.phase = None

    def show(self, p: dict) -> None:
        from tqdm import tqdm

        if "steps" not in p:
            return
        if p.get("phase") != self.phase:
            self.close()
            self.phase = p.get("phase")
            self.bar = tqdm(total=p["steps"], desc=self.phase, unit="step")
        self.bar.n = p["step"]
        post = {"epoch": f"{p['epoch']}/{p['epochs']}", "loss": p.get("loss")}
        if "val_accuracy" in p:
            post["val_acc"] = p["val_accuracy"]
        self.bar.set_postfix(post, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def submit_train(client, dataset: str, base: str, **hyper) -> TrainJob:
    job_id = str(uuid.uuid4())
    spec = trainspec.parse({"dataset": dataset, "base": base, **hyper, "run_id": job_id}, client.registry)
    client.submit_many(trainspec.TRAIN_MODEL, [[spec.to_json()]], job_ids=[job_id])
    return TrainJob(client, job_id, trainspec.TRAIN_MODEL)


def main(argv=None) -> int:
    """``elastiq train --dataset D --base B [--epochs N] [--lr X] [--max-train N] [--name N]
    [--publish] [--no-wait] [--json]``: queue a fine-tune; show its progress; print the version."""
    import argparse

    p = argparse.ArgumentParser(prog="elastiq train", description="fine-tune in the pool (a 'train' worker runs it)")
    p.add_argument("--dataset", default="rotten_tomatoes")
    p.add_argument("--base", default="minilm")
    p.add_argument("--name", default="sentiment")
    for flag, kind in (("--epochs", int), ("--lr", float), ("--batch-size", int), ("--max-train", int),
                       ("--max-eval", int), ("--student-layers", int), ("--student-epochs", int), ("--seed", int)):
        p.add_argument(flag, type=kind)
    p.add_argument("--publish", action="store_true", help="make the new version current at once")
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    hyper = {k: v for k, v in vars(a).items() if v is not None and k not in (
        "dataset", "base", "no_wait", "json", "publish")}
    from producer import Client

    with Client() as c:
        job = c.train(a.dataset, a.base, publish=a.publish, **hyper)
        if a.no_wait:
            print(job.id)
            return 0
        out = job.wait(progress=not a.json)
    print(json.dumps(out, indent=None if a.json else 1))
    return 0
