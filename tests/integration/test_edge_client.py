"""A real edge client (torch-free process) against a real pool serving the published version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.conftest import ROOT
from tests.integration.test_edge_cloud import SMALL, edge_env  # noqa: F401 - the fixture

SCRIPT = r"""
import json, sys
import numpy as np
from producer.edge import EdgeClient
from elastiq import datasets
texts = [e.text for e in datasets.load("rotten_tomatoes", "test", limit=40)]
probe = EdgeClient("rt", cloud_model="rt")
conf = probe.local(texts).max(1)
edge = EdgeClient("rt", cloud_model="rt", threshold=float(np.median(conf)))
answers = edge.classify(texts, timeout=60)
local = [edge.model.labels[int(i)] for i in edge.local(texts).argmax(1)]
print(json.dumps({"answers": answers, "local": local, "chosen_threshold": probe.threshold, "threshold": edge.threshold,
                  "version": edge.version, "heavy": sorted(m for m in ("torch", "transformers") if m in sys.modules)}))
"""


def test_edge_client_answers_locally_or_escalates_without_torch(redis_url, edge_env, workers, redis, tmp_path):  # noqa: F811 - the pytest fixture imported above
    from elastiq import modelstore
    from elastiq.registry import Registry
    from elastiq.trainspec import parse
    from training import run

    reg = Registry.from_env()
    manifest = run.run(parse({"dataset": "rotten_tomatoes", "base": "tiny-enc", **SMALL}, reg), reg,
                       store=edge_env)
    modelstore.Versions(redis, edge_env).publish("rt", manifest["version"])
    workers.start("rt", 1, slots=8, threads=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ELASTIQ_EDGE_CACHE": str(tmp_path / "edge")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []                                   # onnxruntime + tokenizers only
    assert out["version"] == manifest["version"]
    assert out["chosen_threshold"] == manifest["edge"]["threshold"]
    answers = out["answers"]
    sources = [a["source"] for a in answers]
    assert len(answers) == 40 and 10 <= sources.count("edge") <= 30 and sources.count("cloud") >= 10
    for a, label in zip(answers, out["local"]):
        assert a["version"] == manifest["version"]
        if a["source"] == "edge":
            assert a["label"] == label and a["confidence"] >= out["threshold"]
        else:
            assert a["edge_confidence"] < out["threshold"] and a["label"] in ("negative", "positive")
    assert (tmp_path / "edge" / "rt" / manifest["version"] / "edge" / "model.onnx").is_file()
    assert not (tmp_path / "edge" / "rt" / manifest["version"] / "cloud").exists()
    # the HTTP gateway passes the version through (sync and async job views)
    import httpx

    from tests.integration.gateway_server import GatewayProcess

    gw = GatewayProcess(redis_url, tmp_path).start()
    try:
        r = httpx.post(gw.url + "/v1/models/rt/infer", headers=gw.headers, json={"inputs": ["great"]}, timeout=30)
        assert r.status_code == 200 and r.json()["model_version"] == manifest["version"]
        job = httpx.post(gw.url + "/v1/models/rt/jobs", headers=gw.headers, json={"inputs": ["bad"]}).json()
        for _ in range(100):
            view = httpx.get(gw.url + f"/v1/jobs/{job['job_id']}", headers=gw.headers).json()
            if view["status"] == "done":
                break
            time.sleep(0.1)
        assert view["result"]["model_version"] == manifest["version"]
    finally:
        gw.stop()


def test_models_cli_list_publish_rollback(redis_url, edge_env, redis, capsys):  # noqa: F811 - the pytest fixture imported above
    from elastiq.cli import main
    from elastiq.registry import Registry
    from elastiq.trainspec import parse
    from training import run

    reg = Registry.from_env()
    made = [run.run(parse({"dataset": "rotten_tomatoes", "base": "tiny-enc", **SMALL, "seed": s,
                           "student_layers": 0}, reg), reg, store=edge_env)["version"] for s in (1, 2)]
    assert main(["models", "rollback", "rt"]) == 1                       # nothing to roll back to
    assert main(["models", "publish", "rt", "v-missing"]) == 1            # not in the store
    for v in made:
        assert main(["models", "publish", "rt", v, "--json"]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["rt"]
    assert listed["current"] == made[1] and listed["history"] == [made[0]] and set(listed["versions"]) == set(made)
    assert listed["versions"][made[0]]["lineage"]["hyper_parameters"]["seed"] == 1
    assert main(["models", "rollback", "rt"]) == 0
    assert redis.get("elastiq:current:rt") == made[0]
    assert main(["models", "list"]) == 0 and f"* {made[0]}" in capsys.readouterr().out
