"""schemathesis, a tool nobody here wrote, generates requests from
/openapi.json and checks the real server never answers with a 500 or with a
response the description does not allow."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.http.app import openapi_document
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server

pytestmark = pytest.mark.db

schema = schemathesis.openapi.from_dict(openapi_document())
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[ServerProcess]:
    """Fuzzing creates webhooks with made-up URLs: this server delivers
    nothing (no background workers) and resolves no names (private allowed),
    so no request ever leaves the machine."""
    with running_server(
        dsn, MENTORFLOW_RUN_WORKERS="0", MENTORFLOW_WEBHOOK_ALLOW_PRIVATE="1"
    ) as process:
        yield process


def test_served_description_is_the_one_fuzzed(server: ServerProcess) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(server.url + "/openapi.json") as response:
        assert json.load(response) == openapi_document()


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_500_and_no_response_against_the_description(case: Any, server: ServerProcess) -> None:
    case.call_and_validate(
        base_url=server.url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        checks=CHECKS,
    )
