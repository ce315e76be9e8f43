"""No input gives a 500, and a refused request records nothing.

Each class of hostile input from docs/api.md's "HTTP conventions" is sent to the
real server over a raw socket (so nothing on the client side tidies it up
first): date-times out of range after conversion to UTC, deep JSON, JSON
constants, forged cursors, undeclared query parameters, header bytes that
are not UTF-8, what aiohttp's own parser refuses, and random bytes anywhere.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server

pytestmark = pytest.mark.db

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[ServerProcess]:
    with running_server(dsn) as process:
        yield process


class Reply:
    def __init__(self, raw: bytes):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }

    def json(self) -> Any:
        return json.loads(self.body)

    def problem(self, status: int, name: str) -> dict[str, Any]:
        assert self.status == status, (self.status, self.body[:300])
        assert self.headers["content-type"].startswith("application/problem+json")
        body: dict[str, Any] = self.json()
        assert body["type"].endswith("/" + name), body
        return body


def send(server: ServerProcess, raw: bytes, timeout: float = 10.0) -> Reply:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return Reply(b"".join(chunks))


def request(
    server: ServerProcess,
    method: str,
    target: str | bytes,
    body: bytes = b"",
    headers: dict[str, str | bytes] | None = None,
) -> Reply:
    lines = [method.encode() + b" " + _bytes(target) + b" HTTP/1.1", b"Host: 127.0.0.1"]
    every = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Connection": "close", **(headers or {})}
    if body or method == "POST":
        every.setdefault("Content-Type", "application/json")
        every["Content-Length"] = str(len(body))
    lines += [name.encode() + b": " + _bytes(value) for name, value in every.items()]
    return send(server, b"\r\n".join(lines) + b"\r\n\r\n" + body)


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def post_json(server: ServerProcess, path: str, body: Any, **headers: str) -> Reply:
    return request(server, "POST", path, json.dumps(body).encode(), headers=dict(headers))


def log_head(server: ServerProcess) -> int:
    """The global log's last position: what "nothing recorded" is checked against."""
    reply = request(server, "GET", "/v1/events?limit=500&after=0")
    feed = reply.json()
    while feed["next_cursor"] is not None:
        feed = request(server, "GET", f"/v1/events?limit=500&cursor={feed['next_cursor']}").json()
    return int(feed["next_after"])


@pytest.fixture(scope="module")
def relationship(server: ServerProcess) -> str:
    reply = post_json(server, "/v1/relationships", {"mentee_id": "hostile-1"})
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


# --- date-times that leave years 1-9999 once converted to UTC ------------------------------


def _in_range(text: str) -> bool:
    """Python holds it in UTC, and it is not one of the two instants that
    PostgreSQL drivers turn into -infinity and infinity."""
    try:
        utc = datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        return False
    return utc not in (datetime.min, datetime.max)


edge_datetimes = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.one_of(
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 2)),
        st.datetimes(min_value=datetime(9999, 12, 30), max_value=datetime(9999, 12, 31, 23, 59)),
    ),
    st.integers(-(24 * 60 - 1), 24 * 60 - 1),
)


@FUZZ
@given(moment=edge_datetimes)
def test_occurred_at_is_stored_only_when_it_holds_in_utc(
    server: ServerProcess, relationship: str, moment: str
) -> None:
    before = log_head(server)
    reply = post_json(
        server,
        f"/v1/relationships/{relationship}/events",
        {
            "type": "concern.raised",
            "data": {"category": "other", "severity": "low"},
            "occurred_at": moment,
        },
    )
    if _in_range(moment):
        assert reply.status == 201, reply.body
    else:
        problem = reply.problem(422, "validation-error")
        assert problem["errors"][0]["path"] == "occurred_at"
        assert log_head(server) == before


@pytest.mark.parametrize(
    "moment",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00", "0001-01-01T00:59:59+01:00"],
)
def test_dates_out_of_range_are_refused_in_data_and_as_of(
    server: ServerProcess, relationship: str, moment: str
) -> None:
    before = log_head(server)
    reply = post_json(server, "/v1/relationships", {"mentee_id": "m-out", "occurred_at": moment})
    reply.problem(422, "validation-error")
    quoted = moment.replace("+", "%2B")
    reply = request(server, "GET", f"/v1/relationships/{relationship}?as_of={quoted}")
    assert reply.problem(422, "validation-error")["errors"][0]["path"] == "query.as_of"
    assert log_head(server) == before


# --- JSON that the parser should never see, or that no peer reads back ----------------------


@pytest.mark.parametrize("depth", [17, 100, 100_000])
def test_json_nested_past_the_limit_is_refused_before_parsing(
    server: ServerProcess, relationship: str, depth: int
) -> None:
    body = b'{"mentee_id": "x", "deep": ' + b"[" * depth + b"]" * depth + b"}"
    if len(body) > 64 * 1024:
        body = b"[" * 60_000  # unbalanced, and still refused for its depth, not its syntax
    reply = request(server, "POST", "/v1/relationships", body)
    assert "nests" in reply.problem(400, "malformed-request")["detail"]


def test_json_nested_within_the_limit_reaches_validation(server: ServerProcess) -> None:
    body = {"mentee_id": "x", "deep": json.loads("[" * 15 + "]" * 15)}
    reply = post_json(server, "/v1/relationships", body)
    assert reply.problem(422, "validation-error")["errors"][0]["path"] == "deep"


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"])
def test_json_constants_beyond_numbers_are_refused(
    server: ServerProcess, relationship: str, constant: bytes
) -> None:
    body = b'{"type": "feedback.given", "data": {"from_role": "mentee", "rating": ' + constant
    reply = request(server, "POST", f"/v1/relationships/{relationship}/events", body + b"}}")
    reply.problem(400, "malformed-request")


# --- cursors and query parameters ---------------------------------------------------------

LISTS = {
    "events": "/v1/events",
    "relationship_events": "/v1/relationships/{id}/events",
    "relationships": "/v1/relationships",
    "timeline": "/v1/relationships/{id}/timeline",
    "audit": "/v1/relationships/{id}/audit",
    "webhooks": "/v1/webhooks",
}


def _cursor(body: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


cursor_bodies = st.one_of(
    st.builds(
        lambda kind, after: {"k": kind, "a": after},
        st.sampled_from([*LISTS, "deliveries", "other"]),
        st.one_of(
            st.integers(),
            st.integers(min_value=2**53, max_value=2**200),
            st.integers(max_value=-1),
            st.floats(allow_nan=True),
            st.text(),
        ),
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
    ),
)


@FUZZ
@given(body=cursor_bodies, route=st.sampled_from(sorted(LISTS)))
def test_forged_cursors_are_refused_never_a_500(
    server: ServerProcess, relationship: str, body: Any, route: str
) -> None:
    path = LISTS[route].format(id=relationship)
    reply = request(server, "GET", f"{path}?cursor={_cursor(body)}")
    assert reply.status in (200, 422), (reply.status, reply.body[:300])
    if reply.status == 422:
        assert reply.json()["errors"][0]["path"] == "query.cursor"


@pytest.mark.parametrize("raw", ["x" * 5000, "%FF%FE", "W1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tb"])
def test_malformed_cursors_are_refused(server: ServerProcess, raw: str) -> None:
    reply = request(server, "GET", f"/v1/events?cursor={raw}")
    reply.problem(422, "validation-error")


@pytest.mark.parametrize(
    "target",
    [
        "/v1/relationships?phases=cultivation",
        "/v1/events?after=0&afterr=1",
        "/v1/relationships/{id}?versio=2",
        "/v1/relationships?limit=1&limit=2",
        "/v1/relationships?%FF=1",
    ],
)
def test_undeclared_or_repeated_query_parameters_are_refused(
    server: ServerProcess, relationship: str, target: str
) -> None:
    reply = request(server, "GET", target.format(id=relationship))
    assert reply.problem(422, "validation-error")["errors"][0]["path"].startswith("query.")


@pytest.mark.parametrize(
    "target",
    [
        "/v1/events?after=99999999999999999999999",
        "/v1/events?after=-1",
        "/v1/events?limit=0",
        "/v1/relationships/{id}?version=9223372036854775808",
        "/v1/relationships?limit=501",
    ],
)
def test_out_of_range_query_values_are_refused(
    server: ServerProcess, relationship: str, target: str
) -> None:
    request(server, "GET", target.format(id=relationship)).problem(422, "validation-error")


# --- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Authorization", "Idempotency-Key", "If-Match", "X-Request-Id", "User-Agent", "Accept"]
)
def test_header_bytes_that_are_not_utf8_are_a_400(
    server: ServerProcess, relationship: str, name: str
) -> None:
    before = log_head(server)
    headers: dict[str, str | bytes] = {name: b"\xff\xfe bad \xc3\x28"}
    body = json.dumps(
        {"type": "concern.raised", "data": {"category": "other", "severity": "low"}}
    ).encode()
    reply = request(server, "POST", f"/v1/relationships/{relationship}/events", body, headers)
    reply.problem(400, "malformed-request")
    assert log_head(server) == before


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /v1/events HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /v1/events HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n",
        b"GET /v1/events HTTP/1.1\r\nHost: x\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/relationships HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not HTTP at all\r\n\r\n",
    ],
)
def test_what_aiohttp_refuses_itself_is_problem_json(server: ServerProcess, raw: bytes) -> None:
    reply = send(server, raw)
    assert 400 <= reply.status < 500, reply.status
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["status"] == reply.status


# --- random bytes anywhere --------------------------------------------------------------------

header_values = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]),
    path=st.sampled_from(
        [
            "/v1/relationships",
            "/v1/relationships/{id}/events",
            "/v1/events",
            "/v1/relationships/{id}",
            "/v1/webhooks",
            "/v1/tokens",
            "/readyz",
        ]
    ),
    query=st.binary(max_size=40).filter(lambda b: not any(c in b for c in b" \r\n#")),
    header=header_values,
    body=st.binary(max_size=300),
)
def test_random_bytes_in_headers_query_and_body_never_give_a_5xx_nor_record(
    server: ServerProcess,
    relationship: str,
    method: str,
    path: str,
    query: bytes,
    header: bytes,
    body: bytes,
) -> None:
    before = log_head(server)
    target = path.format(id=relationship).encode() + b"?" + query
    headers: dict[str, str | bytes] = {"X-Fuzz": header, "Idempotency-Key": header or b"k"}
    reply = request(server, method, target, body, headers)
    assert reply.status < 500, (reply.status, reply.body[:300])
    assert log_head(server) == before


# --- small rules of the contract ----------------------------------------------------------------


def test_if_match_star_means_any_version(server: ServerProcess, relationship: str) -> None:
    reply = post_json(
        server,
        f"/v1/relationships/{relationship}/events",
        {"type": "concern.raised", "data": {"category": "other", "severity": "low"}},
        **{"If-Match": "*"},
    )
    assert reply.status == 201, reply.body


def test_opening_a_relationship_answers_with_its_position(server: ServerProcess) -> None:
    reply = post_json(server, "/v1/relationships", {"mentee_id": "positioned"})
    assert reply.status == 201
    body = reply.json()
    assert reply.headers["location"] == f"/v1/relationships/{body['id']}"
    assert body["position"] == log_head(server)
    posted = post_json(
        server,
        f"/v1/relationships/{body['id']}/events",
        {"type": "concern.raised", "data": {"category": "other", "severity": "low"}},
    )
    assert posted.headers["location"] == f"/v1/relationships/{body['id']}/events?from_version=2"
    feed = request(server, "GET", f"/v1/events?after={body['position'] - 1}&limit=2").json()
    assert feed["items"][0]["relationship_id"] == body["id"]


def test_an_exactly_full_last_page_has_no_next_cursor(server: ServerProcess) -> None:
    reply = post_json(server, "/v1/relationships", {"mentee_id": "paged"})
    rid = reply.json()["id"]
    for _ in range(3):
        post_json(
            server,
            f"/v1/relationships/{rid}/events",
            {"type": "concern.raised", "data": {"category": "other", "severity": "low"}},
        )
    page = request(server, "GET", f"/v1/relationships/{rid}/events?limit=4").json()
    assert len(page["items"]) == 4 and page["next_cursor"] is None
    page = request(server, "GET", f"/v1/relationships/{rid}/events?limit=2").json()
    second = request(
        server, "GET", f"/v1/relationships/{rid}/events?limit=2&cursor={page['next_cursor']}"
    ).json()
    assert [i["version"] for i in second["items"]] == [3, 4] and second["next_cursor"] is None
    head = log_head(server)
    feed = request(server, "GET", f"/v1/events?after={head - 3}&limit=3").json()
    assert len(feed["items"]) == 3 and feed["next_cursor"] is None


def test_the_diagram_follows_accept(server: ServerProcess) -> None:
    reply = request(server, "GET", "/v1/workflow/diagram", headers={"Accept": "image/svg+xml"})
    assert reply.status == 200  # drawn in Python: no Graphviz needed
    assert reply.headers["content-type"].startswith("image/svg+xml")
    plain = request(server, "GET", "/v1/workflow/diagram", headers={"Accept": "text/plain"})
    assert plain.status == 200 and plain.headers["content-type"].startswith("text/plain")
    operation = request(server, "GET", "/openapi.json").json()["paths"]["/v1/workflow/diagram"]
    assert set(operation["get"]["responses"]["200"]["content"]) == {"text/plain", "image/svg+xml"}


def test_meetings_held_under_a_calendar_id_once_and_not_in_the_future(
    server: ServerProcess,
) -> None:
    rid = post_json(server, "/v1/relationships", {"mentee_id": "cal"}).json()["id"]
    events = f"/v1/relationships/{rid}/events"
    from tests.e2e.journey import TO_CULTIVATION

    for event_type, data, actor in TO_CULTIVATION:
        body: dict[str, Any] = {"type": event_type, "actor": actor}
        if data is not None:
            body["data"] = data
        assert post_json(server, events, body).status == 201
    held = {
        "type": "meeting.held",
        "data": {"meeting_id": "cal-9", "held_at": "2026-02-01T10:00:00Z"},
    }
    assert post_json(server, events, held).status == 201
    again = post_json(server, events, held).problem(422, "validation-error")
    assert again["errors"][0]["path"] == "data.meeting_id"
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    later = {"type": "meeting.held", "data": {"meeting_id": "cal-10", "held_at": future}}
    problem = post_json(server, events, later).problem(422, "validation-error")
    assert problem["errors"][0]["path"] == "data.held_at"
