"""The request and append counters: what a scrape shows, and a bounded set of
series whatever methods clients send."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.platform.metrics import METHODS, Metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_requests_are_counted_and_timed_per_method_route_and_status() -> None:
    metrics = Metrics()
    metrics.request_done("POST", "/v1/relationships/{id}/events", 201, 0.003)
    metrics.request_done("POST", "/v1/relationships/{id}/events", 201, 0.2)
    metrics.request_done("GET", "/healthz", 200, 0.0005)
    route = {"method": "POST", "route": "/v1/relationships/{id}/events"}
    assert sample(metrics, "mentorflow_http_requests_total", **route, status="201") == 2
    assert (
        sample(
            metrics, "mentorflow_http_requests_total", method="GET", route="/healthz", status="200"
        )
        == 1
    )
    assert sample(metrics, "mentorflow_http_request_duration_seconds_count", **route) == 2
    assert sample(metrics, "mentorflow_http_request_duration_seconds_sum", **route) == 0.203
    assert (
        sample(metrics, "mentorflow_http_request_duration_seconds_bucket", **route, le="0.005") == 1
    )


@given(
    st.lists(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1), max_size=30)
)
def test_any_other_method_counts_as_other(methods: list[str]) -> None:
    metrics = Metrics()
    for method in methods:
        metrics.request_done(method, "unmatched", 405, 0.001)
    others = sum(method not in METHODS for method in methods)
    counted = sample(
        metrics, "mentorflow_http_requests_total", method="other", route="unmatched", status="405"
    )
    assert (counted or 0) == others
    shown = {s.labels["method"] for m in metrics.requests.collect() for s in m.samples}
    assert shown <= METHODS | {"other"}


def test_appended_events_are_counted_by_type() -> None:
    metrics = Metrics()
    metrics.appended(["meeting.held", "meeting.held", "concern.raised"])
    metrics.appended(["meeting.held"])
    assert sample(metrics, "mentorflow_events_appended_total", type="meeting.held") == 3
    assert sample(metrics, "mentorflow_events_appended_total", type="concern.raised") == 1
