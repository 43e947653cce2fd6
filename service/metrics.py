"""Prometheus metrics of one server process (its own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Requests by status, solve durations, queue depth, failures, worker restarts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "relucvx_requests",
            "HTTP requests by method, route and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.solve_seconds = Histogram(
            "relucvx_solve_seconds",
            "Wall time of solves in worker processes (seconds)",
            ["kind"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.solves = Counter(
            "relucvx_solves",
            "Finished solves by the status of their report",
            ["status"],
            registry=self.registry,
        )
        self.failures = Counter(
            "relucvx_failures",
            "Requests or jobs that failed, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "relucvx_queue_depth",
            "Requests waiting for a worker (sync) and queued jobs (jobs)",
            ["queue"],
            registry=self.registry,
        )
        self.workers_busy = Gauge(
            "relucvx_workers_busy", "Worker processes solving now", registry=self.registry
        )
        self.workers_alive = Gauge(
            "relucvx_workers_alive", "Worker processes alive", registry=self.registry
        )
        for kind in ("sync", "job"):
            self.solve_seconds.labels(kind)
            self.queue_depth.labels("jobs" if kind == "job" else kind)
