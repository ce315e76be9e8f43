"""Prometheus metrics of one application (its own registry, so several apps
can live in one process, as they do in tests). The projection runner adds its
own (lag, checkpoint, leader per projection) to the same registry."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted by name; any other a client sends counts as "other", so
no client can add time series at will."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mentorflow_http_requests_total",
            "HTTP requests by route and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "mentorflow_http_request_duration_seconds",
            "HTTP request latency by route.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.appends = Counter(
            "mentorflow_events_appended_total",
            "Events recorded, by event type.",
            ("type",),
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "mentorflow_webhook_attempts_total",
            "Webhook delivery attempts by outcome.",
            ("outcome",),
            registry=self.registry,
        )

        self.task_failures = Counter(
            "mentorflow_background_task_failures_total",
            "Unexpected ends of background tasks (each is logged and restarted).",
            ("task",),
            registry=self.registry,
        )

        self.tree_size = Gauge(
            "mentorflow_merkle_tree_size",
            "Leaves in the stored Merkle tree (events covered by roots and proofs).",
            registry=self.registry,
        )
        self.tree_lag = Gauge(
            "mentorflow_merkle_tree_lag_events",
            "Events in the global log not yet in the stored Merkle tree.",
            registry=self.registry,
        )

        self.risk_pass = Histogram(
            "mentorflow_risk_pass_seconds",
            "Duration of one evaluation pass of the at-risk rules (the risk worker).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.risk_leader = Gauge(
            "mentorflow_risk_leader",
            "1 while this process runs the risk worker.",
            registry=self.registry,
        )

        # The series of the label sets already used: labels() checks and
        # converts its values and takes a lock on every call, a few
        # microseconds on every request and every event.
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._append_series: dict[str, Any] = {}

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a request and observe its latency."""
        shown = method if method in METHODS else "other"
        key = (shown, route, status)
        series = self._request_series.get(key)
        if series is None:
            series = (
                self.requests.labels(shown, route, str(status)),
                self.latency.labels(shown, route),
            )
            self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def tree_built(self, size: int, last_position: int) -> None:
        self.tree_size.set(size)
        self.tree_lag.set(max(0, last_position - size))

    def task_failed(self, task: str, _error: BaseException | None) -> None:
        self.task_failures.labels(task).inc()

    def appended(self, event_types: Iterable[str]) -> None:
        """Count recorded events (types of the catalogue: a bounded set)."""
        known = self._append_series
        for event_type in event_types:
            series = known.get(event_type)
            if series is None:
                series = known[event_type] = self.appends.labels(event_type)
            series.inc()

    def webhook_attempt(self, outcome: str) -> None:
        self.webhook_attempts.labels(outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
