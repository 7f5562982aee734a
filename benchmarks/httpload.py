"""A lean closed-loop HTTP/1.1 load generator for ``elastiq bench gateway``, in its own process.

    python -m benchmarks.httpload SPEC.json OUT.json

SPEC: ``{"url", "token", "texts", "concurrency", "encoding_format", "keep"}``. ``concurrency``
keep-alive connections on raw asyncio streams (uvloop when installed), each sending
``POST /v1/embeddings {"model", "input": text, "encoding_format"}`` for the next text until
none is left, reading the response (Content-Length framed), JSON-decoding it and decoding
its vector, as a client would. OUT: ``seconds``, ``latencies_ms``, ``errors``, the vectors
of the first ``keep`` texts, and ``cpu_s``: this process's CPU over the load itself
(``cpu_s_total`` adds its start-up: imports, reading the spec).

Why not httpx: an ``httpx.AsyncClient`` spent ≈ 5.5 ms of CPU per request here, five times
what the Python client spends for the same job, on the cores the gateway and the workers
need; this costs a small fraction of that, so the HTTP arm measures the gateway, not the
load generator. Each request is built from the same JSON an SDK would send.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import sys
import time
from urllib.parse import urlsplit

MODEL = "minilm"


def request_bytes(host: str, token: str, text: str, fmt: str, model: str = MODEL) -> bytes:
    body = json.dumps({"model": model, "input": text, "encoding_format": fmt}).encode()
    return (f"POST /v1/embeddings HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nAccept: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """``(status, body, server_closes)`` of one Content-Length framed HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, closes = None, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            closes = value.strip().lower() == b"close"
    if length is None:
        raise ValueError(f"a response without Content-Length: {head[:200]!r}")
    return status, await reader.readexactly(length), closes


def vector_of(body: bytes) -> list[float]:
    emb = json.loads(body)["data"][0]["embedding"]
    if isinstance(emb, str):
        raw = base64.b64decode(emb)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return emb


async def run_load(spec: dict) -> dict:
    url = urlsplit(spec["url"])
    texts, keep, fmt = spec["texts"], spec.get("keep", 16), spec["encoding_format"]
    todo = list(range(len(texts)))[::-1]
    latencies: list[float] = []
    errors: list[str] = []
    vectors: dict[int, list[float]] = {}
    connects: list[float] = []

    async def connection():
        t = time.perf_counter()
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        connects.append((time.perf_counter() - t) * 1000)
        try:
            while todo:
                i = todo.pop()
                t = time.perf_counter()
                writer.write(request_bytes(url.netloc, spec["token"], texts[i], fmt))
                status, body, closes = await read_response(reader)
                latencies.append((time.perf_counter() - t) * 1000)
                if status != 200:
                    errors.append(f"{status}: {body[:200].decode(errors='replace')}")
                else:
                    vector = vector_of(body)
                    if i < keep:
                        vectors[i] = vector
                if closes:
                    writer.close()
                    reader, writer = await asyncio.open_connection(url.hostname, url.port)
        finally:
            writer.close()

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(spec["concurrency"])))
    return {"seconds": time.perf_counter() - started, "cpu_s": time.process_time() - cpu,
            "latencies_ms": latencies, "errors": errors, "connect_ms_max": max(connects, default=0.0),
            "vectors": [vectors.get(i) for i in range(min(keep, len(texts)))]}


def main(argv: list[str]) -> int:
    spec_path, out_path = argv
    with open(spec_path) as f:
        spec = json.load(f)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run_load(spec))
    else:
        result = uvloop.run(run_load(spec))
    result["cpu_s_total"] = time.process_time()
    with open(out_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
