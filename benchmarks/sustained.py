"""``elastiq bench sustained``: a saturated pool for minutes, while Redis fills with results.

Every other benchmark runs seconds on a near-empty Redis. A pool that runs for minutes
keeps each answer for ``ELASTIQ_RESULT_TTL_S`` (default 3600 s), so Redis grows by every
job's result, and with AOF on (the stack's default, ``appendfsync everysec``) Redis
rewrites its append-only file each time it doubles: a forked child that writes the
whole data set, on the same cores as the workers.

Two workers x 16 slots, one thread each, on a Redis started as ``elastiq up`` starts it;
the client keeps 200-400 single-sentence jobs waiting (never reads the results, which
stay for their TTL as an application's would). Sampled every second: jobs done, Redis's
memory, whether an AOF rewrite is running. Reported per 5 s window, and:

- ``rewrite_ratio``: jobs/s in windows with a rewrite running / in the other windows of
  the same run (the baseline);
- ``kb_per_job``: Redis memory per job kept (result + job record), and the memory the
  mean rate would hold at the result TTL;
- ``trend``: jobs/s of the last quarter of windows without a rewrite / the first quarter.

The figures are written only once every submitted job is done and none failed.
"""

from __future__ import annotations

import statistics
import time

from benchmarks import harness as h

WINDOW_S = 5.0
LOW, HIGH = 200, 400        # jobs kept waiting: the pool is never idle, the list stays short


def run(*, smoke: bool = False, model: str = "minilm", workers: int = 2, duration_s: float = 480.0) -> dict:
    from elastiq import contract
    from elastiq.settings import Settings

    if smoke:
        model, workers, duration_s = "debug", 1, 12.0
    texts = h.sentences(1000)
    queue = contract.queue_for(model)
    with h.stack(appendfsync="everysec") as st:
        h.stage(f"{workers} worker(s) x 16 slots, saturated for {duration_s:.0f}s, AOF everysec")
        st.start_workers(model, workers, slots=16, threads=1)
        r = st.redis_client()
        with st.client() as client:
            samples, submitted = _drive(r, client, model, queue, texts, duration_s)
        failed = _drain(r, queue, submitted)
        report = {"benchmark": "sustained", "model": model, "machine": h.machine(), "engine": h.pool_engine(st, model),
                  "settings": {"workers": workers, "slots": 16, "threads": 1, "duration_s": duration_s,
                               "waiting_kept": [LOW, HIGH], "appendfsync": "everysec",
                               "result_ttl_s": Settings.from_env().result_ttl_s, "window_s": WINDOW_S},
                  "jobs": submitted, "failed": failed}
        r.close()
    assert failed == 0, f"{failed} job(s) failed"
    return {**report, **summarize(samples, report["settings"]["result_ttl_s"])}


def _drive(r, client, model: str, queue: str, texts: list[str], duration_s: float) -> tuple[list[dict], int]:
    """Keep LOW-HIGH jobs waiting for ``duration_s``; one sample a second."""
    from elastiq import contract

    stats = contract.stats_key(queue)
    samples, submitted, i = [], 0, 0
    t0 = time.monotonic()
    memory0 = int(r.info("memory")["used_memory"])
    next_sample = t0
    while (now := time.monotonic()) - t0 < duration_s:
        if now >= next_sample:
            persistence = r.info("persistence")
            samples.append({"t": round(now - t0, 2), "done": int(r.hget(stats, "done") or 0),
                            "memory_mb": round((int(r.info("memory")["used_memory"]) - memory0) / 2**20, 2),
                            "rewriting": bool(persistence.get("aof_rewrite_in_progress")),
                            "rewrites": int(persistence.get("aof_rewrites") or 0)})
            next_sample += 1.0
        if r.llen(queue) < LOW:
            client.submit_many(model, [[texts[(i + k) % len(texts)]] for k in range(HIGH - LOW)])
            submitted += HIGH - LOW
            i += HIGH - LOW
        else:
            time.sleep(0.01)
    return samples, submitted


def _drain(r, queue: str, submitted: int, timeout_s: float = 120.0) -> int:
    """Wait until every submitted job is answered; the number that failed."""
    from elastiq import contract

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        counts = r.hgetall(contract.stats_key(queue))
        done, failed = int(counts.get("done") or 0), int(counts.get("failed") or 0)
        if done + failed >= submitted:
            return failed
        time.sleep(0.2)
    raise AssertionError(f"{submitted - done - failed} of {submitted} job(s) not answered after {timeout_s:.0f}s")


def summarize(samples: list[dict], result_ttl_s: int) -> dict:
    """Windows of WINDOW_S: jobs/s and whether a rewrite ran; the ratios against the same run."""
    per = int(WINDOW_S)
    windows = []
    for k in range(per, len(samples), per):
        a, b = samples[k - per], samples[k]
        windows.append({"t": b["t"], "jobs_per_s": round((b["done"] - a["done"]) / (b["t"] - a["t"]), 1),
                        "rewrite": any(s["rewriting"] for s in samples[k - per: k + 1]) or b["rewrites"] > a["rewrites"],
                        "memory_mb": b["memory_mb"]})
    rates = [w["jobs_per_s"] for w in windows]
    during = [w["jobs_per_s"] for w in windows if w["rewrite"]]
    calm = [w["jobs_per_s"] for w in windows if not w["rewrite"]]
    first, last = samples[0], samples[-1]
    kept = last["done"] - first["done"]
    kb = (last["memory_mb"] - first["memory_mb"]) * 1024 / kept if kept else None
    mean_rate = kept / (last["t"] - first["t"]) if last["t"] > first["t"] else 0.0
    quarter = max(1, len(calm) // 4)
    out = {"jobs_per_s": round(mean_rate, 1), "windows": windows,
           "jobs_per_s_min_window": min(rates, default=None),
           "rewrites": last["rewrites"] - first["rewrites"],
           "jobs_per_s_during_rewrite": round(statistics.median(during), 1) if during else None,
           "jobs_per_s_otherwise": round(statistics.median(calm), 1) if calm else None,
           "kb_per_job": round(kb, 2) if kb else None,
           "redis_mb_at_result_ttl": round(kb * mean_rate * result_ttl_s / 1024) if kb else None}
    out["rewrite_ratio"] = (round(out["jobs_per_s_during_rewrite"] / out["jobs_per_s_otherwise"], 3)
                            if during and calm else None)
    out["trend"] = (round(statistics.median(calm[-quarter:]) / statistics.median(calm[:quarter]), 3)
                    if len(calm) >= 2 else None)
    return out


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = report["windows"]
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.plot([x["t"] for x in w], [x["jobs_per_s"] for x in w], "-", color="tab:blue", label="jobs/s (5 s windows)")
    for x in w:
        if x["rewrite"]:
            ax.axvspan(x["t"] - WINDOW_S, x["t"], color="tab:red", alpha=0.15, lw=0)
    ax.set_xlabel("s")
    ax.set_ylabel("jobs/s")
    ax.set_ylim(bottom=0)
    mem = ax.twinx()
    mem.plot([x["t"] for x in w], [x["memory_mb"] for x in w], "--", color="grey", label="Redis memory (MB)")
    mem.set_ylabel("Redis memory kept (MB)")
    ratio = report.get("rewrite_ratio")
    ax.set_title(f"sustained: {report['jobs_per_s']:.0f} jobs/s, {report['rewrites']} AOF rewrites (red), "
                 f"during/otherwise {ratio if ratio is not None else '-'}x @ {report['git_commit'][:8]}", fontsize=9)
    ax.legend(loc="lower left", fontsize=7)
    mem.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
