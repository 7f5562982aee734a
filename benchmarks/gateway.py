"""``elastiq bench gateway``: the HTTP gateway against the Python client, same pool, same run.

Bounded closed-loop load at concurrency 64, one sentence per request, on one pool (two
MiniLM workers, one torch thread each), in alternating arms (client, gateway, gateway,
client, ...) so drift in machine load falls on both:

- client arm: 64 threads sharing one ``Client``, each ``submit("minilm", [s]).result()``;
- gateway arm: 64 keep-alive connections from a lean HTTP/1.1 load generator in its own
  process (benchmarks/httpload.py: raw asyncio streams), each
  ``POST /v1/embeddings {"model": "minilm", "input": s}`` (``encoding_format`` as the
  openai SDK sends it by default: base64), to ``elastiq gateway`` in its own process.
  (An ``httpx.AsyncClient`` here cost ≈ 5.5 ms of CPU per request, five times the Python
  client, on the two cores the gateway and the workers need: it measured itself.)

Reported: gateway throughput ÷ client throughput (target ≥ 0.8), p50 added latency =
gateway p50 − client p50 (target ≤ 2 ms), p99s, CPU per request of each arm's load
generator, of the benchmark process and of the gateway process, that the gateway's
vectors equal the client's (cosine), the settings and the git commit.

In a closed loop at concurrency 64 the pool is saturated, so each arm's p50 is mostly
queueing (≈ 64 ÷ its throughput) and the loaded difference follows the throughput ratio.
The HTTP hop itself is also measured unloaded: one request at a time, client and gateway
alternating request by request (``unloaded``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks import harness as h
from benchmarks.httpload import vector_of
from benchmarks.provenance import git_commit
from elastiq.local import procs

TARGET_RATIO = 0.8
TARGET_ADDED_P50_MS = 2.0
MODEL = "minilm"
CHECKED = 16              # requests whose vectors are compared with the client's


@contextlib.contextmanager
def gateway_process(st: h.Stack, token: str):
    port = procs.free_port()
    with open(st.home / "gateway.log", "ab") as log, \
            h.child([sys.executable, "-m", "elastiq.cli", "gateway", "--port", str(port)],
                    {**st.env, "ELASTIQ_GATEWAY_TOKENS": token}, log=log, grace_s=15) as proc:
        if not procs.wait_port(port, 60):
            raise RuntimeError(f"the gateway did not start: {(st.home / 'gateway.log').read_text()[-2000:]}")
        yield proc, f"http://127.0.0.1:{port}"


def client_arm(client, texts: list[str], concurrency: int) -> dict:
    latencies, lock = [], threading.Lock()

    def one(text: str) -> list[float]:
        t = time.perf_counter()
        out = client.submit(MODEL, [text]).result(timeout=120).outputs[0]
        with lock:
            latencies.append((time.perf_counter() - t) * 1000)
        return out

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        vectors = list(pool.map(one, texts))
    return {"seconds": time.perf_counter() - started, "latencies_ms": latencies, "vectors": vectors}


def gateway_arm(url: str, token: str, texts: list[str], concurrency: int, fmt: str, workdir: Path) -> dict:
    """The HTTP load, from a lean load generator in its own process (benchmarks/httpload.py)."""
    spec, out = workdir / "httpload-spec.json", workdir / "httpload-out.json"
    spec.write_text(json.dumps({"url": url, "token": token, "texts": texts, "concurrency": concurrency,
                                "encoding_format": fmt, "keep": CHECKED}))
    out.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "benchmarks.httpload", str(spec), str(out)],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"the HTTP load generator failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(out.read_text())


def unloaded_pairs(client, url: str, token: str, texts: list[str], fmt: str) -> dict:
    """One request at a time, client and gateway alternating: the HTTP hop's own latency
    (a keep-alive ``http.client`` connection: no client library's overhead in the hop)."""
    lat: dict[str, list[float]] = {"client": [], "gateway": []}
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        for text in texts:
            t = time.perf_counter()
            client.submit(MODEL, [text]).result(timeout=60)
            lat["client"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            conn.request("POST", "/v1/embeddings", json.dumps({"model": MODEL, "input": text, "encoding_format": fmt}),
                         headers)
            r = conn.getresponse()
            body = r.read()
            lat["gateway"].append((time.perf_counter() - t) * 1000)
            if r.status != 200:
                raise RuntimeError(f"gateway: {r.status} {body[:200]!r}")
            vector_of(body)
    finally:
        conn.close()
    out = {arm: {"requests": len(v), "p50_ms": round(h.percentile(v, 50), 3), "p99_ms": round(h.percentile(v, 99), 3)}
           for arm, v in lat.items()}
    out["added_p50_ms"] = round(out["gateway"]["p50_ms"] - out["client"]["p50_ms"], 3)
    return out


def _summary(runs: list[dict]) -> dict:
    lat = [x for r in runs for x in r["latencies_ms"]]
    n = len(lat)
    seconds = sum(r["seconds"] for r in runs)
    return {"requests": n, "seconds": round(seconds, 3), "requests_per_s": round(n / seconds, 2),
            "per_round_requests_per_s": [round(len(r["latencies_ms"]) / r["seconds"], 2) for r in runs],
            "p50_ms": round(h.percentile(lat, 50), 3), "p99_ms": round(h.percentile(lat, 99), 3)}


def _cpu(arms: dict[str, list[dict]]) -> dict:
    """Where the cores went, per request: each arm's load generator (the client arm's is the
    Python client in this process; the gateway arm's is benchmarks/httpload.py in its own
    process, over its load; ``..._with_startup`` adds its interpreter start), this process
    and the gateway process."""
    out = {}
    for arm, runs in arms.items():
        n = sum(len(r["latencies_ms"]) for r in runs)
        for part in ("load_generator", "this_process", "gateway"):
            out[f"{arm}_arm_{part}"] = round(sum(r["cpu_s"][part] for r in runs) / n * 1000, 3)
    n = sum(len(r["latencies_ms"]) for r in arms["gateway"])
    out["gateway_arm_load_generator_with_startup"] = round(
        sum(r["cpu_s_total"] for r in arms["gateway"]) / n * 1000, 3)
    return out


def _cosine_min(a: list[list[float]], b: list[list[float]]) -> float:
    worst = 1.0
    for x, y in zip(a, b):
        dot = sum(p * q for p, q in zip(x, y))
        nx, ny = sum(p * p for p in x) ** 0.5, sum(q * q for q in y) ** 0.5
        worst = min(worst, dot / (nx * ny))
    return worst


def alternate(client, proc, url: str, token: str, texts: list[str], *, n: int, rounds: int,
              concurrency: int, fmt: str, workdir: Path) -> dict[str, list[dict]]:
    """``rounds`` of (client, gateway) then (gateway, client), ...; fresh texts for each arm."""
    arms: dict[str, list[dict]] = {"client": [], "gateway": []}
    offset = 0
    for r in range(rounds):
        for arm in (("client", "gateway") if r % 2 == 0 else ("gateway", "client")):
            batch, offset = texts[offset:offset + n], offset + n
            h.stage(f"round {r + 1}/{rounds}: {arm}, {n} requests at concurrency {concurrency}")
            here, there = time.process_time(), h.cpu_s(proc.pid)
            if arm == "client":
                result = client_arm(client, batch, concurrency)
            else:
                result = {**gateway_arm(url, token, batch, concurrency, fmt, workdir), "texts": batch}
            this = time.process_time() - here
            result["cpu_s"] = {"load_generator": result["cpu_s"] if arm == "gateway" else this,
                               "this_process": this, "gateway": h.cpu_s(proc.pid) - there}
            arms[arm].append(result)
    errors = [e for run_ in arms["gateway"] for e in run_["errors"]]
    if errors:
        raise RuntimeError(f"{len(errors)} gateway request(s) failed, e.g. {errors[:3]}")
    return arms


def run(*, smoke: bool = False, n: int = 2000, rounds: int = 3, concurrency: int = 64, workers: int = 2,
        slots: int = 16, encoding_format: str = "base64", unloaded: int = 300) -> dict:
    if smoke:
        n, rounds, unloaded = 128, 1, 20
    report: dict = {"benchmark": "gateway", "machine": h.machine(), "git_commit": git_commit(),
                    "settings": {"requests_per_arm_round": n, "rounds": rounds, "concurrency": concurrency,
                                 "workers": workers, "slots": slots, "threads_per_worker": 1, "model": MODEL,
                                 "encoding_format": encoding_format, "order": "client,gateway,gateway,client,...",
                                 "unloaded_pairs": unloaded},
                    "target_ratio": TARGET_RATIO, "target_added_p50_ms": TARGET_ADDED_P50_MS}
    texts = h.sentences(n * rounds * 2 + 64)
    token = secrets.token_urlsafe(32)
    with h.stack() as st, st.client() as client:
        h.stage(f"{workers} MiniLM worker(s), slots {slots}")
        st.start_workers(MODEL, workers, slots=slots, threads=1)
        with gateway_process(st, token) as (proc, url):
            client_arm(client, texts[:32], concurrency)                            # warm both paths
            warm = gateway_arm(url, token, texts[:32], concurrency, encoding_format, st.home)
            if warm["errors"]:
                raise RuntimeError(f"gateway warm-up failed: {warm['errors'][:3]}")
            arms = alternate(client, proc, url, token, texts[64:], n=n, rounds=rounds,
                             concurrency=concurrency, fmt=encoding_format, workdir=st.home)
            h.stage(f"unloaded: {unloaded} requests per arm, one at a time, alternating")
            report["unloaded"] = unloaded_pairs(client, url, token, texts[:unloaded], encoding_format)
            first = arms["gateway"][0]
            expected = client.map(MODEL, first["texts"][:CHECKED], progress=False)
            report["cosine_min_gateway_vs_client"] = round(
                _cosine_min(first["vectors"], [x.outputs[0] for x in expected]), 6)
    c, g = _summary(arms["client"]), _summary(arms["gateway"])
    g["connect_ms_max"] = round(max(r["connect_ms_max"] for r in arms["gateway"]), 3)   # a connect stall shows here
    report.update(client=c, gateway=g, cpu_ms_per_request=_cpu(arms),
                  throughput_ratio=round(g["requests_per_s"] / c["requests_per_s"], 3),
                  added_p50_ms=round(g["p50_ms"] - c["p50_ms"], 3))
    report["meets_target"] = (report["throughput_ratio"] >= TARGET_RATIO
                              and report["added_p50_ms"] <= TARGET_ADDED_P50_MS)
    return report
