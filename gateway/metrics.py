"""Prometheus metrics of the gateway (``GET /metrics``), on a registry of its own.

The request counter is kept by a plain ASGI middleware outside auth and the body limit,
so refused requests (401, 413) are counted too. The route label is the route's template
(``/v1/jobs/{job_id}``), never the raw path, so label cardinality stays bounded.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

KNOWN_PATHS = frozenset({"/healthz", "/metrics", "/v1/models", "/v1/embeddings", "/openapi.json"})
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("elastiq_gateway_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("elastiq_gateway_request_seconds", "time to answer a request",
                                 ["route"], registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.stages = Histogram("elastiq_gateway_stage_seconds", "time a request spends queueing its "
                                "jobs (admit + publish) and waiting for their results", ["stage"], registry=r,
                                buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.jobs = Counter("elastiq_gateway_jobs_submitted", "jobs queued by the gateway", ["model"],
                            registry=r)
        self.batch = Histogram("elastiq_gateway_submit_batch_jobs", "jobs per Client.submit_many call",
                               registry=r, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.redis_errors = Counter("elastiq_gateway_redis_errors", "Redis operations that failed",
                                    ["where"], registry=r)
        self.results = Counter("elastiq_gateway_results", "job results received, by how: a pub/sub "
                               "message, or an MGET (stored before the SUBSCRIBE, or a missed message)",
                               ["via"], registry=r)
        self.waiting = Gauge("elastiq_gateway_results_awaited", "job results the gateway is waiting for",
                             registry=r)

    def submit_batch(self, model: str, n: int) -> None:
        self.jobs.labels(model).inc(n)
        self.batch.observe(n)

    def redis_error(self, where: str, exc: Exception | None = None) -> None:
        self.redis_errors.labels(where).inc()

    def result(self, via: str) -> None:
        self.results.labels(via).inc()

    def watch_waiter(self, waiter) -> None:
        self.waiting.set_function(lambda: waiter.pending)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_label(scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return path
    return scope.get("path") if scope.get("path") in KNOWN_PATHS else "other"


class MetricsMiddleware:
    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_label(scope)
            method = scope.get("method") if scope.get("method") in METHODS else "other"
            self.metrics.requests.labels(route, method, str(status[0]) if status[0] else "none").inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
