"""The fast JSON paths (orjson) answer exactly as the standard library would.

Request bodies are read by orjson when it can and by `json` otherwise, and
responses are written by orjson with `json` as the fallback: for any body,
the result (or the refusal) must be what the standard parser alone gave.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.http.json_text import dumps
from service.http.problems import Problem
from service.http.requests import parse_json
from service.platform import fast_json

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _standard(raw: bytes) -> Any:
    """What the service answered before orjson: the standard parser's value,
    or the refusal's class."""
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return Problem
    if _has_non_finite(value):
        return Problem
    return value


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    return False


def _ours(raw: bytes) -> Any:
    try:
        return parse_json(raw)
    except Problem:
        return Problem


@settings(max_examples=400)
@given(VALUES)
def test_any_json_value_reads_as_the_standard_parser_reads_it(value: Any) -> None:
    for raw in (json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode()):
        assert _ours(raw) == _standard(raw)


@settings(max_examples=400)
@given(st.binary(max_size=64) | st.text(max_size=32).map(str.encode))
def test_any_bytes_read_or_refused_as_the_standard_parser_would(raw: bytes) -> None:
    assert _ours(raw) == _standard(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"version": 123456789012345678901234567890}',  # beyond 64 bits: kept exact
        b'{"a": 1e400}',  # infinite: refused
        b'{"a": NaN}',
        b'{"a": "\\ud800"}',  # a lone surrogate: read, for validation to name its path
        b'\xef\xbb\xbf{"a": 1}',  # a byte-order mark
        b'{"a": 1, "a": 2}',  # the last of duplicate names wins
        b'"\\u0000"',
    ],
)
def test_the_edges_where_orjson_differs_answer_as_before(raw: bytes) -> None:
    assert _ours(raw) == _standard(raw)
    if raw.startswith(b'{"version"'):
        assert parse_json(raw)["version"] == 123456789012345678901234567890


@settings(max_examples=400)
@given(VALUES)
def test_any_response_body_is_written_as_json_that_reads_back_the_same(value: Any) -> None:
    assert json.loads(dumps(value)) == value


@settings(max_examples=300)
@given(VALUES)
def test_stored_json_reads_back_as_the_standard_parser_reads_it(value: Any) -> None:
    """jsonb columns (event metadata, read models) go through fast_json both ways."""
    text = fast_json.dumps(value)
    assert fast_json.loads(text) == json.loads(text) == value
    assert fast_json.loads(text.encode()) == value


def test_stored_json_keeps_long_integers_exact_and_refuses_what_is_not_json() -> None:
    assert fast_json.loads('{"n": 123456789012345678901234567890}') == {
        "n": 123456789012345678901234567890
    }
    assert fast_json.dumps({"n": 2**70}) == '{"n":1180591620717411303424}'
    with pytest.raises(ValueError):
        fast_json.loads("{not json")
