"""``elastiq bench overhead``: round trip of a no-op job, elastiq ÷ plain Celery ÷ raw Redis.

One job at a time (submit → result), on an idle pool with one worker, so only overhead
is measured. Three paths on the same private redis-server:

- elastiq: ``Client.submit("debug", [text]).result()`` (the model-free kind);
- plain Celery: a minimal app + no-op task (:mod:`benchmarks.plain_celery`), threads pool,
  ``apply_async(...).get()``;
- raw Redis: LPUSH a request, an echo process BRPOPs it and LPUSHes a reply, BRPOP it.

Reported: p50/p99 of each, and elastiq ÷ plain Celery (target ≤ 1.2×) and ÷ raw Redis;
also what the micro-batcher adds to a lone job (elastiq ÷ the same worker with
``--no-batching``; target ≤ 2 ms) and the per-job time of a 100-job ``Client.map``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from benchmarks import harness as h

TARGET = 1.2


def _stats(samples_ms: list[float]) -> dict:
    return {"n": len(samples_ms), "p50_ms": round(h.percentile(samples_ms, 50), 3),
            "p99_ms": round(h.percentile(samples_ms, 99), 3), "mean_ms": round(sum(samples_ms) / len(samples_ms), 3)}


def _time(fn, n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def echo_main(url: str) -> None:
    """The raw-Redis echo: BRPOP a request, LPUSH the reply."""
    import redis

    r = redis.Redis.from_url(url)
    while True:
        item = r.brpop(["bench:req"], timeout=0)
        if item[1] == b"stop":
            return
        r.lpush("bench:rep", item[1])


@contextlib.contextmanager
def _child(cmd: list[str], env: dict):
    p = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield p
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def run(*, smoke: bool = False, n: int = 1000, slots: int = 4) -> dict:
    if smoke:
        n = 60
    report: dict = {"benchmark": "overhead", "machine": h.machine(), "target_ratio": TARGET, "n": n,
                    "slots": slots}
    text = "a short sentence for a no-op job"
    with h.stack() as st:
        h.stage("raw Redis LPUSH/BRPOP echo")
        import redis as redis_py

        with _child([sys.executable, "-c", f"from benchmarks.overhead import echo_main; echo_main({st.url!r})"],
                    st.env):
            r = redis_py.Redis.from_url(st.url)

            def raw() -> None:
                r.lpush("bench:req", text)
                r.brpop(["bench:rep"], timeout=10)

            report["raw_redis"] = _stats(_time(raw, n))
            r.lpush("bench:req", "stop")
            r.close()

        h.stage("plain Celery no-op task")
        cmd = [sys.executable, "-m", "celery", "-A", "benchmarks.plain_celery", "worker", "-P", "threads",
               "-c", str(slots), "-Q", "bench.noop", "--without-mingle", "--without-gossip", "-l", "WARNING"]
        with _child(cmd, {**st.env, "BENCH_REDIS_URL": st.url}):
            from benchmarks.plain_celery import app, noop

            app.conf.broker_url = app.conf.result_backend = st.url
            deadline = time.monotonic() + 60
            while True:      # until the worker answers
                try:
                    noop.apply_async(([text],)).get(timeout=2)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
            report["plain_celery"] = _stats(_time(lambda: noop.apply_async(([text],)).get(timeout=30), n))
            app.close()

        h.stage("elastiq no-op (debug kind) job, worker with --no-batching")
        st.start_workers("debug", 1, slots=slots, threads=1, extra=["--no-batching"])
        with st.client() as client:
            report["elastiq_no_batching"] = _stats(
                _time(lambda: client.submit("debug", [text]).result(timeout=30), n))
        st.stop_workers()
        h.stage("elastiq no-op (debug kind) job")
        st.start_workers("debug", 1, slots=slots, threads=1)
        with st.client() as client:
            report["elastiq"] = _stats(_time(lambda: client.submit("debug", [text]).result(timeout=30), n))
            report["elastiq_map_of_100_per_job_ms"] = round(
                min(_time(lambda: client.map("debug", [[text]] * 100, progress=False), 3, warmup=1)) / 100, 3)
        st.stop_workers()
    e, c, raw_ = report["elastiq"], report["plain_celery"], report["raw_redis"]
    report["ratio_p50_vs_celery"] = round(e["p50_ms"] / c["p50_ms"], 3)
    report["ratio_p99_vs_celery"] = round(e["p99_ms"] / c["p99_ms"], 3)
    report["ratio_p50_vs_raw_redis"] = round(e["p50_ms"] / raw_["p50_ms"], 3)
    report["ratio_p99_vs_raw_redis"] = round(e["p99_ms"] / raw_["p99_ms"], 3)
    # what the micro-batcher adds to a lone job (target: <= 2 ms; Triton/TEI add 0)
    report["batcher_added_p50_ms"] = round(e["p50_ms"] - report["elastiq_no_batching"]["p50_ms"], 3)
    report["meets_target"] = report["ratio_p50_vs_celery"] <= TARGET
    return report


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["raw Redis", "plain Celery", "elastiq"]
    rows = [report["raw_redis"], report["plain_celery"], report["elastiq"]]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [r["p50_ms"] for r in rows], 0.4, label="p50")
    ax.bar([i + 0.2 for i in x], [r["p99_ms"] for r in rows], 0.4, label="p99")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("round trip, ms")
    ax.set_title(f"no-op round trip ({report['machine']['cpus']} cores)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
