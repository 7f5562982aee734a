"""``elastiq bench coldstart``: worker process start → model loaded → first job done.

A job is queued *before* the worker starts, so "first job done" is the earliest a new
worker can contribute. Phases, in seconds from the process spawn (median of ``runs``):
``ready_s`` (heartbeat says ready: imports + model load + Celery consumer up) and
``first_job_done_s``. Separately, in a fresh interpreter: the time to import torch and
transformers (and the model's own code, which transformers imports lazily on first use)
and to load the weights, so the import share of the cold start is known.
Baseline for the ratio: the bare ``python -c pass`` interpreter start, same run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from benchmarks import harness as h

IMPORTS = """
import json, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import transformers
from transformers import AutoModel, AutoTokenizer
t2 = time.perf_counter()
from elastiq.registry import Registry
from workers import runtime as rt
spec = Registry.from_env().get(MODEL)
path = str(spec.resolve_path())
config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
for arch in config.architectures or []:
    getattr(transformers, arch)          # transformers imports the model's code lazily
t3 = time.perf_counter()
rt.configure_torch(1)
m = rt.load(spec)
t4 = time.perf_counter()
m.forward(m.encode(["warm up"]))
t5 = time.perf_counter()
print(json.dumps({"import_torch_s": t1 - t0, "import_transformers_s": t2 - t1,
                  "import_model_code_s": t3 - t2, "load_model_s": t4 - t3, "first_forward_s": t5 - t4}))
"""


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
    rows, engines = [], []
    with h.stack() as st:
        env = {**os.environ, **st.env}
        report["python_start_s"] = round(statistics.median(_interpreter_s() for _ in range(3)), 3)
        for i in range(runs):
            h.stage(f"cold start {i + 1}/{runs}")
            with st.client() as client:
                job = client.submit(model, ["the first job of a new worker"])
                spawned = time.time()
                (wid,) = st.start_workers(model, 1, slots=8, threads=1, wait=False)
                st.wait_ready([wid])
                result = job.result(timeout=180)
            hb = st.heartbeats().get(wid, {})
            engines.append((hb.get("engines") or {}).get(model))
            started = hb.get("started_at") or spawned
            rows.append({"ready_s": round(hb["ready_at"] - started, 3),
                         "first_job_done_s": round(result.timings["finished_at"] - started, 3),
                         **{k: round(v, 3) for k, v in _imports(model, env).items()}})
            st.stop_workers()
    for key in rows[0]:
        report[key] = round(statistics.median(r[key] for r in rows), 3)
    report["runs_detail"] = rows
    report["engine"] = h.one_engine(engines)
    imports = report["import_torch_s"] + report["import_transformers_s"] + report["import_model_code_s"]
    report["import_share_of_ready"] = round(imports / report["ready_s"], 3)
    report["ready_vs_python_start"] = round(report["ready_s"] / report["python_start_s"], 1)
    report["meets_target"] = report["first_job_done_s"] <= report["target_s"]
    return report
