"""Text PostgreSQL cannot store (NUL, lone surrogates) is found in every body
that holds some, whether or not the body is walked (requests.unstorable_paths
skips the walk for bodies that cannot hold any)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from service.http.problems import Problem
from service.http.requests import _unstorable_text, parse_json, unstorable_paths

_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec=None),  # any code point, surrogates and NUL included
        st.sampled_from(["\x00", "\ud800", "\udfff", "한", "\u00e9", "\\", "u"]),
    ),
    max_size=8,
)
_BODIES = st.recursive(
    st.one_of(st.none(), st.integers(), _TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)),
    max_leaves=8,
).map(lambda value: {"data": value})
_ENCODINGS = st.sampled_from(["escaped", "utf-8", "utf-16", "utf-16-le", "utf-32"])


def _raw(body: Any, encoding: str) -> bytes:
    if encoding == "escaped":
        return json.dumps(body, ensure_ascii=True).encode()
    text = json.dumps(body, ensure_ascii=False)
    return text.encode(encoding, "surrogatepass")


@given(body=_BODIES, encoding=_ENCODINGS)
@example(body={"data": "\ud800"}, encoding="utf-8")
@example(body={"data": "a\x00b"}, encoding="utf-16-le")
@example(body={"data": {"\x00": 1}}, encoding="escaped")
def test_the_paths_are_those_a_walk_finds(body: dict[str, Any], encoding: str) -> None:
    raw = _raw(body, encoding)
    try:
        parsed = parse_json(raw)
    except Problem:
        return  # refused before any text is looked at
    assert unstorable_paths(parsed, raw) == list(_unstorable_text(parsed, ""))


def test_a_surrogate_in_raw_utf8_is_found() -> None:
    raw = b'{"notes": "\xed\xa0\x80"}'  # orjson refuses it; the standard parser does not
    assert unstorable_paths(parse_json(raw), raw) == ["notes"]
