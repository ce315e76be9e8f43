"""schemathesis, a tool nobody here wrote, generates requests from
/openapi.json and checks the real server never answers with a 500 or with a
response the description does not allow."""

from __future__ import annotations

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

from service.http.app import all_routes
from service.http.openapi import build_openapi
from tests.support.server import ADMIN_TOKEN, ServerProcess

pytestmark = pytest.mark.db

schema = schemathesis.openapi.from_dict(build_openapi(all_routes()))
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)


def test_served_description_is_the_one_fuzzed(server: ServerProcess) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(server.url + "/openapi.json") as response:
        assert json.load(response) == build_openapi(all_routes())


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
