"""Proofs over the global log's Merkle tree (RFC 9162 §2.1.3 and §2.1.4).

Readable with any token (a proof holds hashes only, nothing of any event's
content). Sizes go up to the built tree: one beyond it is a 422 naming the
current size, like a position beyond the end of the log elsewhere.
"""

from __future__ import annotations

import base64

from aiohttp import web

from service.http.context import services
from service.http.json_text import json_response
from service.http.problems import Problem
from service.http.requests import MAX_INTEGER, query_int
from service.http.routing import READ, Param, Route
from service.verifiable.tree import MerkleTree


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _required(request: web.Request, name: str, low: int = 1) -> int:
    value = query_int(request, name, low=low)
    if value is None:
        raise Problem.invalid(f"query.{name}", "is required", f"query parameter {name} is required")
    return value


def _beyond(name: str, value: int, built: int) -> Problem:
    message = f"is beyond the tree's current size ({built})"
    return Problem.invalid(f"query.{name}", message, f"{name} {value} {message}")


async def _tree_for(
    request: web.Request, low_name: str, low: int, size_name: str, size: int
) -> MerkleTree:
    """The tree, once ``low <= size`` and ``size`` is within what is built (else a 422)."""
    if low > size:
        message = f"must be at most {size_name}"
        raise Problem.invalid(f"query.{low_name}", message, f"{low_name} {message}")
    tree = MerkleTree(services(request).store)
    built = await tree.size()
    if size > built:
        raise _beyond(size_name, size, built)
    return tree


async def inclusion_proof(request: web.Request) -> web.Response:
    position = _required(request, "position")
    tree_size = _required(request, "tree_size")
    tree = await _tree_for(request, "position", position, "tree_size", tree_size)
    leaf, path = await tree.inclusion(position - 1, tree_size)
    return json_response(
        {
            "position": position,
            "tree_size": tree_size,
            "leaf_hash": _b64(leaf),
            "audit_path": [_b64(h) for h in path],
        }
    )


async def consistency_proof(request: web.Request) -> web.Response:
    first = _required(request, "first")
    second = _required(request, "second")
    tree = await _tree_for(request, "first", first, "second", second)
    proof = await tree.consistency_proof(first, second)
    return json_response({"first": first, "second": second, "proof": [_b64(h) for h in proof]})


def _size(name: str, description: str) -> Param:
    schema = {"type": "integer", "minimum": 1, "maximum": MAX_INTEGER}
    return Param(name, "query", schema, description, required=True)


ROUTES = [
    Route("GET", "/v1/proofs/inclusion", inclusion_proof, READ,
          "Prove an event is in the log's Merkle tree of a size", "verifiable history",
          ok_schema="InclusionProof", errors=("validation-error",),
          params=(_size("position", "the event's global position (its leaf index is position - 1)"),
                  _size("tree_size", "the tree size (a checkpoint's); at most the built tree's")),
          program_scoped=True),
    Route("GET", "/v1/proofs/consistency", consistency_proof, READ,
          "Prove the log's tree of one size is a prefix of a larger one", "verifiable history",
          ok_schema="ConsistencyProof", errors=("validation-error",),
          params=(_size("first", "the smaller tree size"),
                  _size("second", "the larger tree size; at most the built tree's")),
          program_scoped=True),
]  # fmt: skip

_HASH = {"type": "string", "contentEncoding": "base64", "description": "32 bytes, base64"}
SCHEMAS = {
    "InclusionProof": {
        "type": "object",
        "required": ["position", "tree_size", "leaf_hash", "audit_path"],
        "properties": {
            "position": {"type": "integer", "minimum": 1},
            "tree_size": {"type": "integer", "minimum": 1},
            "leaf_hash": _HASH,
            "audit_path": {"type": "array", "items": _HASH},
        },
    },
    "ConsistencyProof": {
        "type": "object",
        "required": ["first", "second", "proof"],
        "properties": {
            "first": {"type": "integer", "minimum": 1},
            "second": {"type": "integer", "minimum": 1},
            "proof": {"type": "array", "items": _HASH},
        },
    },
}
