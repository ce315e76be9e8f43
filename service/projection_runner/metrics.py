"""The runner's Prometheus metrics (fed by :mod:`service.projection_runner.monitoring`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ProjectionMetrics:
    """The runner's Prometheus metrics, in the registry it is given (a
    registry per application, so several can live in one process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        label = ("projection",)
        self.lag = Gauge(
            "mentorflow_projection_lag_events",
            "Events in the global log not yet projected (last position - checkpoint).",
            label,
            registry=registry,
        )
        self.checkpoint = Gauge(
            "mentorflow_projection_checkpoint_position",
            "Last global position the projection has committed.",
            label,
            registry=registry,
        )
        self.leader = Gauge(
            "mentorflow_projection_leader",
            "1 while this process runs the projection's worker (holds its lock).",
            label,
            registry=registry,
        )
        self.events = Counter(
            "mentorflow_projection_events",
            "Events applied by this process's worker.",
            label,
            registry=registry,
        )
        self.failures = Counter(
            "mentorflow_projection_failures",
            "Batches of this process's worker that failed (then retried after a back-off).",
            label,
            registry=registry,
        )
        self.stuck = Gauge(
            "mentorflow_projection_stuck_position",
            "Position of the event the projection fails on, whichever process runs it"
            " (0 when it is not stuck).",
            label,
            registry=registry,
        )
