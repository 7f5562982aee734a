"""Prometheus metrics for the autoscaler, served on 127.0.0.1 by default."""

from __future__ import annotations

from elastiq.decisions import DecisionRow


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
        self.window = g("scale_down_window_seconds", "Scale-down window in force (its floor, doubled by the back-off)")
        self.redis_used = Gauge("elastiq_redis_memory_used_ratio",
                                "Redis used memory / maxmemory (new jobs are refused at 1)", registry=self.registry)
        self.decisions = Counter("elastiq_decisions", "Decisions by action and whether capacity bound",
                                 ["queue", "action", "capacity_limited"], registry=self.registry)
        self.server = start_http_server(port, addr=addr, registry=self.registry)

    def observe(self, row: dict) -> None:
        r = DecisionRow.from_dict(row)
        for gauge, value in ((self.current, r.current), (self.desired, r.desired), (self.waiting, r.waiting),
                             (self.in_flight, r.in_flight), (self.oldest, r.oldest_age_s), (self.window, r.window_s)):
            if value is not None:
                gauge.labels(r.queue).set(value)
        self.decisions.labels(r.queue, r.action.split(" ")[0], str(r.capacity_limited).lower()).inc()

    def observe_redis(self, used_fraction: float | None) -> None:
        if used_fraction is not None:
            self.redis_used.set(used_fraction)
