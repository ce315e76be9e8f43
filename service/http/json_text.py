"""JSON out: every response body and kept response is written by `dumps`
(orjson, with the standard encoder for what orjson cannot write)."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from service.platform.fast_json import dumps

__all__ = ["dumps", "json_response"]

json_response = partial(web.json_response, dumps=dumps)
"""`web.json_response` writing with `dumps`."""
