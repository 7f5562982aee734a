"""Token counts equal the worker tokenizer's; the gateway never imports torch; the
committed OpenAPI document is the generated one."""

from __future__ import annotations

import json
import subprocess
import sys

from elastiq.registry import DEFAULT_MODELS, ModelSpec
from gateway.tokens import TokenCounter, max_length
from tests.conftest import ROOT

TEXTS = ["The cat sits on the mat.", "Unbelievably, tokenization's edge-cases (ünïcödé) matter!",
         " ".join(["word"] * 400)]          # longer than MiniLM's 256: truncated like the worker does


def transformers_count(path, texts, limit) -> int:
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return sum(len(ids) for ids in tok(texts, truncation=True, max_length=limit)["input_ids"])


def test_token_counts_match_the_workers_tokenizer(tiny_classifier):
    spec = DEFAULT_MODELS["minilm"]
    path = spec.resolve_path()
    assert max_length(spec, path) == 256
    counter = TokenCounter()
    assert counter.count(spec, TEXTS) == transformers_count(path, TEXTS, 256)
    assert counter.count(spec, TEXTS[2:]) == 256
    clf = ModelSpec("tiny", "classify", str(tiny_classifier))     # no max_seq_length option
    limit = max_length(clf, tiny_classifier)
    assert limit == 128                                             # capped by max_position_embeddings
    assert counter.count(clf, TEXTS) == transformers_count(tiny_classifier, TEXTS, limit)


def test_no_tokenizer_json_means_no_count(tmp_path):
    assert TokenCounter().count(ModelSpec("bare", "embed", str(tmp_path)), ["x"]) is None


def test_gateway_never_imports_torch():
    code = """
import sys, asyncio
from gateway.app import create_app
from gateway.cli import openapi_text
from gateway.tokens import TokenCounter
from elastiq.registry import DEFAULT_MODELS
app = create_app()
openapi_text()
assert TokenCounter().count(DEFAULT_MODELS["minilm"], ["hello world"]) == 4
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "numpy", "workers"))
print(heavy)
"""
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]", p.stdout


def test_committed_openapi_is_the_generated_one():
    from gateway.cli import openapi_text

    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert committed == openapi_text(), "regenerate: elastiq gateway --openapi docs/openapi.json"
    doc = json.loads(committed)
    assert set(doc["paths"]) == {"/v1/embeddings", "/v1/models", "/v1/models/{model}/infer",
                                 "/v1/models/{model}/jobs", "/v1/jobs/{job_id}", "/healthz", "/metrics"}
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/healthz"]["get"]["security"] == []
