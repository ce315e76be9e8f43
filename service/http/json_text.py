"""JSON out: every response body and kept response is written by `dumps`.

orjson writes a body several times faster than the standard library, which
shows on every request; a value it cannot write (an integer beyond 64 bits)
goes to the standard encoder, so nothing that was answerable before fails now.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import orjson
from aiohttp import web


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


json_response = partial(web.json_response, dumps=dumps)
"""`web.json_response` writing with `dumps`."""
