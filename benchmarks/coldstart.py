"""``elastiq bench coldstart``: worker process start → model loaded → first job done.

A job is queued *before* the worker starts, so "first job done" is the earliest a new
worker can contribute. Phases, in seconds from the process spawn (median of ``runs``):
``ready_s`` (heartbeat says ready: imports + model load, taking jobs) and
``first_job_done_s``. Separately, in a fresh interpreter: the time to import what the
model's engine needs (the registry's choice: onnx -> onnxruntime + tokenizers; torch ->
torch, transformers and the model's own code, which transformers imports lazily) and to
load the model, so the import share of the cold start is known. An onnx graph is
exported (if not cached yet) before the first run: the runs measure a cached graph.
Baseline for the ratio: the bare ``python -c pass`` interpreter start, same run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from benchmarks import harness as h
from benchmarks.engine import warm_engine

IMPORTS = """
import json, time
from elastiq.registry import Registry
spec = Registry.from_env().get(MODEL)
t = {}
t0 = time.perf_counter()
if spec.engine == "torch":
    import torch
    t["import_torch_s"] = time.perf_counter() - t0
    import transformers
    from transformers import AutoModel, AutoTokenizer
    t["import_transformers_s"] = time.perf_counter() - t0 - sum(t.values())
    config = transformers.AutoConfig.from_pretrained(str(spec.resolve_path()), local_files_only=True)
    for arch in config.architectures or []:
        getattr(transformers, arch)          # transformers imports the model's code lazily
    t["import_model_code_s"] = time.perf_counter() - t0 - sum(t.values())
else:
    import onnxruntime
    t["import_onnxruntime_s"] = time.perf_counter() - t0
    import tokenizers
    t["import_tokenizers_s"] = time.perf_counter() - t0 - sum(t.values())
t["import_s"] = time.perf_counter() - t0
from workers import runtime as rt
t1 = time.perf_counter()
m = rt.load(spec, 1)
t2 = time.perf_counter()
m.forward(m.encode(["warm up"]))
t["load_model_s"], t["first_forward_s"] = t2 - t1, time.perf_counter() - t2
print(json.dumps(t))
"""


def cold_start_once(st: h.Stack, model: str) -> dict:
    """Queue a job, spawn one worker, wait for the result: seconds from the spawn to the
    worker being ready and to the job being done, and the worker's RSS then."""
    with st.client() as client:
        job = client.submit(model, ["the first job of a new worker"])
        spawned = time.time()
        (wid,) = st.start_workers(model, 1, slots=8, threads=1, wait=False)
        st.wait_ready([wid])
        result = job.result(timeout=180)
    hb = st.heartbeats()[wid]
    started = hb.started_at or spawned
    row = {"ready_s": round(hb.ready_at - started, 3),
           "first_job_done_s": round(result.timings["finished_at"] - started, 3),
           "worker_rss_mb": hb.rss_mb, "engine": h.engine_of(hb, model)}
    st.stop_workers()
    return row


def _interpreter_s() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t


def _imports(model: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", IMPORTS.replace("MODEL", repr(model))], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(*, smoke: bool = False, model: str = "minilm", runs: int = 3) -> dict:
    if smoke:
        runs = 1
    import os

    report: dict = {"benchmark": "coldstart", "model": model, "machine": h.machine(), "runs": runs,
                    "target_s": 15.0}
    rows = []
    with h.stack() as st:
        report.update(warm_engine(model))
        env = {**os.environ, **st.env}
        report["python_start_s"] = round(statistics.median(_interpreter_s() for _ in range(3)), 3)
        for i in range(runs):
            h.stage(f"cold start {i + 1}/{runs}")
            rows.append({**cold_start_once(st, model),
                         **{k: round(v, 3) for k, v in _imports(model, env).items()}})
    report["engine"] = h.one_engine(r.pop("engine") for r in rows)
    for key in rows[0]:
        report[key] = round(statistics.median(r[key] for r in rows), 3)
    report["runs_detail"] = rows
    report["import_share_of_ready"] = round(report["import_s"] / report["ready_s"], 3)
    report["ready_vs_python_start"] = round(report["ready_s"] / report["python_start_s"], 1)
    report["meets_target"] = report["first_job_done_s"] <= report["target_s"]
    return report
