"""The proof routes, in process: what they answer verifies against the roots
RFC 9162 gives, every byte string is padded standard base64, and wrong or
missing sizes are 422 problems."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from domain.verifiable import merkle
from service.http.app import create_app
from service.platform.settings import Settings
from service.store.eventstore import EventStore
from service.store.records import NewEvent
from service.verifiable.tree import MerkleTree
from service.verifiable.tree_builder import catch_up

pytestmark = pytest.mark.db

TOKEN = "proof-test-admin-token-0123456789"
SIZE = 11


@pytest.fixture
async def http(store: EventStore, dsn: str, schema: str) -> AsyncIterator[Any]:
    for i in range(SIZE):
        await store.append([NewEvent(uuid4(), 1, "t", f"event {i}".encode())])
    await catch_up(store)
    await store.append([NewEvent(uuid4(), 1, "t", b"not built yet")])
    settings = Settings(database_url=dsn, db_schema=schema, admin_token=TOKEN)
    server = TestServer(create_app(settings, store, dsn, background=False))
    await server.start_server()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:

        async def get(path: str) -> tuple[int, Any]:
            async with session.get(server.make_url(path)) as response:
                return response.status, await response.json(content_type=None)

        yield get
    await server.close()


def _decode(text: str) -> bytes:
    raw = base64.b64decode(text, validate=True)
    assert base64.b64encode(raw).decode() == text  # standard alphabet, padded
    return raw


async def test_inclusion_proofs_verify(http: Any, store: EventStore) -> None:
    tree = MerkleTree(store)
    for size in (1, 2, 5, SIZE):
        root = await tree.root(size)
        for position in range(1, size + 1):
            status, body = await http(f"/v1/proofs/inclusion?position={position}&tree_size={size}")
            assert status == 200, body
            assert body["position"] == position and body["tree_size"] == size
            path = [_decode(h) for h in body["audit_path"]]
            leaf = _decode(body["leaf_hash"])
            assert merkle.verify_inclusion(position - 1, size, leaf, path, root)


async def test_consistency_proofs_verify(http: Any, store: EventStore) -> None:
    tree = MerkleTree(store)
    for first in range(1, SIZE + 1):
        for second in (first, SIZE):
            status, body = await http(f"/v1/proofs/consistency?first={first}&second={second}")
            assert status == 200, body
            proof = [_decode(h) for h in body["proof"]]
            assert (body["first"], body["second"]) == (first, second)
            assert merkle.verify_consistency(
                first, second, await tree.root(first), await tree.root(second), proof
            )


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("/v1/proofs/inclusion?tree_size=3", "query.position"),
        ("/v1/proofs/inclusion?position=1", "query.tree_size"),
        ("/v1/proofs/inclusion?position=0&tree_size=3", "query.position"),
        ("/v1/proofs/inclusion?position=4&tree_size=3", "query.position"),
        ("/v1/proofs/inclusion?position=x&tree_size=3", "query.position"),
        (f"/v1/proofs/inclusion?position=1&tree_size={SIZE + 1}", "query.tree_size"),
        ("/v1/proofs/inclusion?position=1&tree_size=99999999999999999999", "query.tree_size"),
        ("/v1/proofs/consistency?second=3", "query.first"),
        ("/v1/proofs/consistency?first=0&second=3", "query.first"),
        ("/v1/proofs/consistency?first=4&second=3", "query.first"),
        (f"/v1/proofs/consistency?first=1&second={SIZE + 1}", "query.second"),
        ("/v1/proofs/consistency?first=1&second=2&extra=1", "query.extra"),
    ],
)
async def test_bad_sizes_are_validation_errors(http: Any, query: str, path: str) -> None:
    status, body = await http(query)
    assert status == 422, body
    assert body["type"].endswith("validation-error")
    assert [e["path"] for e in body["errors"]] == [path]
    if "tree_size=12" in query or "second=12" in query:
        assert f"({SIZE})" in body["detail"]
