"""``elastiq bench overhead``: round trip of a no-op job, elastiq ÷ plain Celery ÷ raw Redis.

One job at a time (submit → result), on an idle pool with one worker, so only overhead
is measured. Three paths on the same private redis-server:

- elastiq: ``Client.submit("debug", [text]).result()`` (the model-free kind);
- plain Celery: a minimal app + no-op task (:mod:`benchmarks.plain_celery`), threads pool,
  ``apply_async(...).get()``;
- raw Redis: LPUSH a request, an echo process BRPOPs it and LPUSHes a reply, BRPOP it.

All four paths stay up for the whole run (the ``--no-batching`` worker on a queue of its
own, ``debug-b``) and are measured in ``rounds`` alternating rounds of ``n`` round trips
each. Reported: p50/p99 of each over all rounds, the per-round p50s, and elastiq ÷ plain
Celery (target ≤ 1.2×) and ÷ raw Redis as the median of the per-round ratios with min and
max; also what the micro-batcher adds to a lone job (elastiq − the same worker with
``--no-batching``; target ≤ 2 ms) and the per-job time of a 100-job ``Client.map``.
"""

from __future__ import annotations

import sys
import time

from benchmarks import harness as h

TARGET = 1.2


def _stats(samples_ms: list[float]) -> dict:
    return {"n": len(samples_ms), "p50_ms": round(h.percentile(samples_ms, 50), 3),
            "p99_ms": round(h.percentile(samples_ms, 99), 3), "mean_ms": round(sum(samples_ms) / len(samples_ms), 3)}


def _time(fn, n: int, warmup: int = 20) -> list[float]:
    """``n`` timed calls of ``fn`` (ms) after ``warmup`` untimed ones."""
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

    r = redis.Redis.from_url(url, socket_timeout=None)    # idles between rounds (redis-py 8: 5 s default)
    while True:
        item = r.brpop(["bench:req"], timeout=0)
        if item[1] == b"stop":
            return
        r.lpush("bench:rep", item[1])



def _celery_ready(noop, text: str) -> None:
    deadline = time.monotonic() + 60
    while True:      # until the worker answers
        try:
            noop.apply_async(([text],)).get(timeout=2)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise


def _paths(r, client, noop, text: str) -> dict:
    """One round trip of each path, as a zero-argument function."""
    def raw() -> None:
        r.lpush("bench:req", text)
        r.brpop(["bench:rep"], timeout=10)

    return {"raw_redis": raw,
            "plain_celery": lambda: noop.apply_async(([text],)).get(timeout=30),
            "elastiq_no_batching": lambda: client.submit("debug-b", [text]).result(timeout=30),
            "elastiq": lambda: client.submit("debug", [text]).result(timeout=30)}


def _summarise(report: dict, samples: dict) -> None:
    """Per-path latency stats, ratios to plain Celery and raw Redis per round, and what the
    micro-batcher adds to a lone job (target: <= 2 ms; Triton/TEI add 0)."""
    for name, rounds_ in samples.items():
        report[name] = {**_stats([x for rs in rounds_ for x in rs]),
                        "p50_ms_per_round": [round(h.percentile(rs, 50), 3) for rs in rounds_]}
    per_round = {name: [{"p50_ms": p, "p99_ms": round(h.percentile(rs, 99), 3)}
                        for p, rs in zip(report[name]["p50_ms_per_round"], samples[name])] for name in samples}
    for base, label in (("plain_celery", "celery"), ("raw_redis", "raw_redis")):
        for q in ("p50", "p99"):
            spread = h.ratio_spread(per_round["elastiq"], per_round[base], f"{q}_ms")
            report[f"ratio_{q}_vs_{label}"] = spread["median"]
            report[f"ratio_{q}_vs_{label}_spread"] = spread
    added = [round(a - b, 3) for a, b in zip(report["elastiq"]["p50_ms_per_round"],
                                             report["elastiq_no_batching"]["p50_ms_per_round"])]
    report["batcher_added_p50_ms"] = h.spread(added)["median"]
    report["batcher_added_p50_ms_spread"] = {**h.spread(added), "per_round": added}


def run(*, smoke: bool = False, n: int = 1000, slots: int = 4, rounds: int = h.ROUNDS) -> dict:
    if smoke:
        n = 20
    report: dict = {"benchmark": "overhead", "machine": h.machine(), "target_ratio": TARGET, "n": n,
                    "rounds": rounds, "slots": slots}
    text = "a short sentence for a no-op job"
    import redis as redis_py

    cmd = [sys.executable, "-m", "celery", "-A", "benchmarks.plain_celery", "worker", "-P", "threads",
           "-c", str(slots), "-Q", "bench.noop", "--without-mingle", "--without-gossip", "-l", "WARNING"]
    with h.stack() as st, \
            h.child([sys.executable, "-c", f"from benchmarks.overhead import echo_main; echo_main({st.url!r})"],
                   st.env), h.child(cmd, {**st.env, "BENCH_REDIS_URL": st.url}):
        h.stage("raw Redis echo, plain Celery, elastiq with and without batching: all up")
        st.start_workers("debug-b", 1, slots=slots, threads=1, extra=["--no-batching"])
        st.start_workers("debug", 1, slots=slots, threads=1)
        from benchmarks.plain_celery import make_app

        capp = make_app(st.url)                 # a fresh app: Celery caches its backend per app
        noop = capp.signature("bench.noop")
        _celery_ready(noop, text)
        r = redis_py.Redis.from_url(st.url, socket_timeout=90)    # redis-py 8 defaults to 5 s: BRPOP waits longer
        r.lpush("bench:req", text)                     # until the echo process answers
        assert r.brpop(["bench:rep"], timeout=60), "the raw Redis echo process did not answer"
        with st.client() as client:
            paths = _paths(r, client, noop, text)
            for fn in paths.values():
                _time(fn, 0, warmup=20)
            samples = h.alternate({name: (lambda _, fn=fn: _time(fn, n, warmup=0)) for name, fn in paths.items()},
                                  rounds)
            report["elastiq_map_of_100_per_job_ms"] = round(
                min(_time(lambda: client.map("debug", [[text]] * 100, progress=False), 3, warmup=1)) / 100, 3)
            report["engine"] = h.pool_engine(st, "debug")
        r.lpush("bench:req", "stop")
        r.close()
        capp.close()
    _summarise(report, samples)
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
