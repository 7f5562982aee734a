"""Shared fixtures: a real redis-server on a free port, real worker processes, tiny models.

A missing service skips locally with the reason and *fails* under ``CI=true``. The slow
suites (docker, faults, slow) run under ``CI=true`` or ``ELASTIQ_TEST_ALL=1``. Any set value
other than ``0``/``false``/``no``/``off`` counts as true (``CI=1``, ``CI=yes``, ``CI=woodpecker``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elastiq.local import procs  # noqa: E402 - after the sys.path line above
from elastiq.redisconn import redis_client  # noqa: E402 - same
from elastiq.settings import Settings  # noqa: E402 - same

# One onnx engine cache for every test (and across runs): the first worker that needs a
# graph exports it (~30 s), every later worker, in any test or ELASTIQ_HOME, reuses it.
os.environ.setdefault("ELASTIQ_ENGINE_CACHE", str(ROOT / ".elastiq" / "engines"))


def truthy(value: str | None) -> bool:
    """Whether an environment flag is on: set, and not 0/false/no/off."""
    return bool(value and value.strip()) and value.strip().lower() not in ("0", "false", "no", "off")


CI = truthy(os.environ.get("CI"))
RUN_ALL = CI or truthy(os.environ.get("ELASTIQ_TEST_ALL"))
SLOW_MARKERS = ("docker", "faults", "slow")


def pytest_collection_modifyitems(config, items):
    if RUN_ALL:
        return
    skip = pytest.mark.skip(reason="slow suite: runs under CI=true, or locally with `make test-all`")
    for item in items:
        if any(item.get_closest_marker(m) for m in SLOW_MARKERS):
            item.add_marker(skip)


def wait_until(pred, timeout_s: float, what: str, interval_s: float = 0.05):
    """Poll ``pred`` until it returns something truthy (returned); AssertionError naming
    ``what`` after ``timeout_s``. For waiting on a condition instead of sleeping."""
    end = time.monotonic() + timeout_s
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def require(ok: bool, reason: str) -> None:
    """Skip locally when a service is missing; fail under CI=true (CI must run it)."""
    if ok:
        return
    if CI:
        pytest.fail(f"{reason} -- CI=true, so a missing service fails the run")
    pytest.skip(f"{reason} (skipped locally; fails under CI=true)")


# --- Redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    server = procs.RedisProcess(procs.free_port(), tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server, monkeypatch):
    """A clean database for each test; ELASTIQ_REDIS_URL points at it."""
    r = redis_client(Settings(redis_url=redis_server.url))
    r.flushall()
    r.close()
    monkeypatch.setenv("ELASTIQ_REDIS_URL", redis_server.url)
    return redis_server.url


def _workers_on(port: int) -> list[int]:
    """Worker processes (any spawner) whose ELASTIQ_REDIS_URL points at this port."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            if b"workers" not in cmd:
                continue
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(e.startswith(b"ELASTIQ_REDIS_URL=") and e.endswith(b":%d/0" % port) for e in env):
            found.append(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_stray_workers(request):
    """A worker a test leaves behind (an autoscaler killed mid-spawn, say) would consume
    the next test's jobs from the shared redis-server: kill it, and say so."""
    yield
    if "redis_server" not in request.fixturenames:
        return
    port = request.getfixturevalue("redis_server").port
    for pid in _workers_on(port):
        print(f"killing a worker left behind by {request.node.nodeid}: pid {pid}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def redis(redis_url):
    r = redis_client(Settings(redis_url=redis_url))
    yield r
    r.close()


# --- models


def build_tiny_classifier(path: Path, labels=("negative", "positive", "neutral")) -> Path:
    """A random 2-layer BERT classifier with MiniLM's tokenizer, saved to ``path``."""
    import transformers

    from elastiq.registry import DEFAULT_MODELS

    src = DEFAULT_MODELS["minilm"].resolve_path()
    tok = transformers.AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    config = transformers.BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    import torch

    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    from training.tiny import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory):
    return build_tiny_classifier(tmp_path_factory.mktemp("tiny-classifier"))


@pytest.fixture(scope="session")
def models_file(tmp_path_factory, tiny_classifier):
    """A registry file adding a classifier and the model-free debug kind."""
    path = tmp_path_factory.mktemp("registry") / "models.json"
    path.write_text(json.dumps({
        "tiny-clf": {"kind": "classify", "source": str(tiny_classifier)},
        "debug": {"kind": "debug"},
    }))
    return path


@pytest.fixture
def models_env(models_file, monkeypatch):
    monkeypatch.setenv("ELASTIQ_MODELS", str(models_file))
    return models_file


# --- worker processes


class WorkerPool:
    """Real ``elastiq worker`` processes, killed at the end of the test."""

    def __init__(self, redis_url: str, log_dir: Path):
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.procs: dict[str, object] = {}

    def start(self, models: str = "minilm", n: int = 1, *, slots: int = 8, threads: int = 1,
              wait: bool = True, extra=None, env=None) -> list[str]:
        base = {k: v for k, v in os.environ.items() if k.startswith("ELASTIQ_")}
        base["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
        ids = []
        for _ in range(n):
            wid = f"test-{uuid.uuid4().hex[:6]}@{models.replace(',', '+')}"
            self.procs[wid] = procs.spawn_worker(
                models, wid, env={**base, "ELASTIQ_REDIS_URL": self.redis_url, **(env or {})},
                log_path=self.log_dir / f"{wid}.log", slots=slots, threads=threads, extra=extra)
            ids.append(wid)
        if wait:
            self.wait_ready(ids)
        return ids

    def wait_ready(self, ids, timeout_s: float = 120) -> None:
        r = redis_client(Settings.from_env(redis_url=self.redis_url))   # TLS settings from the env
        try:
            procs.wait_ready(r, ids, timeout_s, procs=[self.procs[i] for i in ids])
        finally:
            r.close()

    def pid(self, wid: str) -> int:
        return self.procs[wid].pid

    def signal(self, wid: str, sig: int) -> None:
        os.killpg(self.procs[wid].pid, sig)

    def log(self, wid: str) -> str:
        return (self.log_dir / f"{wid}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


@pytest.fixture
def workers(redis_url, tmp_path):
    pool = WorkerPool(redis_url, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
def client(redis_url):
    from producer import Client

    c = Client(redis_url)
    yield c
    c.close()


# --- Docker: a real engine, the project image built once per session


IMAGE = os.environ.get("ELASTIQ_TEST_IMAGE", "elastiq:test")
BASE = "python:3.11-slim"


def _engine():
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception as exc:     # noqa: BLE001 - no SDK, no socket, engine down
        return exc


@pytest.fixture(scope="session")
def docker_client():
    client = _engine()
    require(not isinstance(client, Exception), f"no Docker Engine: {client}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def image(docker_client):
    """The project image, built once per session from compose/Dockerfile (layer cache reused)."""
    require(_has_image(docker_client, BASE), f"base image {BASE} missing: run ../shared/tools/make-base-image")
    started = time.monotonic()
    # Built the way `docker compose build` builds it, so the compose test reuses the cache.
    env = {**os.environ, "ELASTIQ_IMAGE": IMAGE, "REDIS_PASSWORD": "x", "FLOWER_USER": "x",
           "FLOWER_PASSWORD": "x"}
    proc = subprocess.run(["docker", "compose", "-p", "elastiq-test-build", "-f", "compose/compose.yaml",
                           "build", "worker"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"docker build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    print(f"image {IMAGE} built in {time.monotonic() - started:.1f}s")
    return IMAGE


def _has_image(client, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except Exception:  # noqa: BLE001 - any failure: no image
        return False
