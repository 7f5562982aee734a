"""Prometheus metrics for the autoscaler, served on 127.0.0.1 by default."""

from __future__ import annotations


class Metrics:
    def __init__(self, port: int, addr: str = "127.0.0.1"):
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        self.registry = CollectorRegistry()
        labels = ["queue"]
        g = lambda name, doc: Gauge(f"elastiq_{name}", doc, labels, registry=self.registry)
        self.current = g("workers_current", "Workers the backend runs for the queue (not draining)")
        self.desired = g("workers_desired", "Workers the policy wants")
        self.waiting = g("queue_waiting", "Jobs waiting in the queue's Redis lists (all priorities)")
        self.in_flight = g("queue_in_flight", "Jobs running on workers (heartbeats)")
        self.oldest = g("queue_oldest_age_seconds", "Age of the oldest waiting job")
        self.decisions = Counter("elastiq_decisions", "Decisions by action and whether capacity bound",
                                 ["queue", "action", "capacity_limited"], registry=self.registry)
        self.server = start_http_server(port, addr=addr, registry=self.registry)

    def observe(self, row: dict) -> None:
        q = row["queue"]
        for gauge, key in ((self.current, "current"), (self.desired, "desired"), (self.waiting, "waiting"),
                           (self.in_flight, "in_flight"), (self.oldest, "oldest_age_s")):
            if row.get(key) is not None:
                gauge.labels(q).set(row[key])
        action = str(row.get("action", "hold")).split(" ")[0]
        self.decisions.labels(q, action, str(bool(row.get("capacity_limited"))).lower()).inc()
