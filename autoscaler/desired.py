"""Desired workers per queue over HTTP, for an orchestrator's own scaler (KEDA).

``elastiq autoscale --backend none`` decides only; each decision lands on a
:class:`DesiredBoard`, and :func:`serve` answers (127.0.0.1 by default)::

    GET /desired/<model or queue>  -> 200 {"queue": "elastiq.minilm", "model": "minilm",
                                          "desired": 3, "current": 1, "reason": "...",
                                          "at": 1764800000.0, "age_s": 0.4}
    GET /desired                    -> 200 {"queues": {...}} (every queue)
    GET /healthz                    -> 200 {"ok": true}

KEDA's ``metrics-api`` scaler reads ``desired`` (``valueLocation: desired``) with
``targetValue: "1"``: the HPA then sets replicas = desired. An unknown queue is 404; a
decision older than ``stale_s`` (the autoscaler stuck, Redis away) is 503, so the scaler
errs and the HPA keeps the current count instead of acting on an old number.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from elastiq import contract
from elastiq.decisions import DecisionRow

FIELDS = ("queue", "desired", "current", "reason", "waiting", "in_flight", "oldest_age_s", "ready", "t")


class DesiredBoard:
    """The last decision of each queue (thread-safe)."""

    def __init__(self, stale_s: float = 30.0, clock: Callable[[], float] = time.time):
        self.stale_s = stale_s
        self.clock = clock
        self._rows: dict[str, dict] = {}
        self._lock = threading.Lock()

    def update(self, row: dict) -> None:
        r = DecisionRow.from_dict(row)
        if r.desired is None:      # a failed tick (backend error): keep the last one
            return
        with self._lock:
            self._rows[r.queue] = {k: getattr(r, k) for k in FIELDS}

    def answer(self, name: str) -> tuple[int, dict]:
        queue = name if name.startswith(contract.QUEUE_PREFIX) else contract.queue_for(name)
        with self._lock:
            row = self._rows.get(queue)
        if row is None:
            return 404, {"error": f"no decision for queue {queue!r} (is it in --models?)"}
        age = self.clock() - row["t"]
        body = {**{k: v for k, v in row.items() if k != "t"}, "model": contract.model_of(queue),
                "at": row["t"], "age_s": round(age, 3)}
        if age > self.stale_s:
            return 503, {**body, "error": f"the last decision is {age:.0f}s old (> {self.stale_s:.0f}s)"}
        return 200, body

    def all(self) -> dict:
        with self._lock:
            names = list(self._rows)
        return {"queues": {q: self.answer(q)[1] for q in names}}


def make_handler(board: DesiredBoard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/healthz":
                status, body = 200, {"ok": True}
            elif path == "/desired":
                status, body = 200, board.all()
            elif path.startswith("/desired/") and path.count("/") == 2:
                status, body = board.answer(path.rsplit("/", 1)[1])
            else:
                status, body = 404, {"error": "GET /desired/<model> or /desired"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    return Handler


def serve(board: DesiredBoard, addr: str = "127.0.0.1", port: int = 9809) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; returns the server (``.server_address``, ``.shutdown()``)."""
    server = ThreadingHTTPServer((addr, port), make_handler(board))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="desired-http", daemon=True).start()
    return server
