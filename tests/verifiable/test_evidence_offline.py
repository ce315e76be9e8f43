"""The offline verifier on bundles made here (no database): a valid one
passes, and whatever a hostile bundle holds in any field, verification
answers with named failures and never raises."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.verifiable import merkle
from domain.verifiable.evidence import parse_canonical, verify_bundle
from domain.verifiable.note import checkpoint_text, raw_public_key, sign

KEY = Ed25519PrivateKey.generate()
PUBLIC = raw_public_key(KEY.public_key())
ORIGIN = "example.org/log"
RECORDED = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _canonical(position: int, stream: str, version: int, event_id: str, kind: str) -> bytes:
    micros = int((RECORDED - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
    text = "\x1f".join(
        [str(position), stream, str(version), event_id, "domain:Event",
         json.dumps({"type": kind}, separators=(", ", ": ")), str(micros)]
    )  # fmt: skip
    return text.encode() + b"\x1f" + b'{"payload": "with \x1f inside"}'


def make_bundle() -> dict[str, Any]:
    stream = str(uuid4())
    positions = [2, 5, 6]  # the others belong to other relationships
    leaves: list[bytes] = []
    canonical: dict[int, bytes] = {}
    ids: dict[int, str] = {}
    for position in range(1, 9):
        if position in positions:
            version = positions.index(position) + 1
            ids[position] = str(uuid4())
            data = _canonical(position, stream, version, ids[position], f"type.{version}")
            canonical[position] = data
        else:
            data = f"other {position}".encode()
        leaves.append(merkle.leaf_hash(data))
    nodes: dict[merkle.Node, bytes] = {}
    for index, leaf in enumerate(leaves):
        known = {n: nodes[n] for n in merkle.frontier_nodes(index)}
        nodes.update(merkle.completed_nodes(index, [leaf], known))
    size = len(leaves)
    root = merkle.root(size, nodes)
    note = sign(checkpoint_text(ORIGIN, size, root), ORIGIN, KEY)
    chain = b""
    events = []
    for version, position in enumerate(positions, start=1):
        chain = hashlib.sha256(chain + canonical[position]).digest()
        events.append(
            {
                "position": position,
                "version": version,
                "canonical": _b64(canonical[position]),
                "chain_hash": _b64(chain),
                "audit_path": [_b64(p) for p in merkle.inclusion_proof(position - 1, size, nodes)],
                "event": {
                    "id": ids[position],
                    "type": f"type.{version}",
                    "relationship_id": stream,
                    "version": version,
                    "position": position,
                    "recorded_at": RECORDED.isoformat(),
                },
            }
        )
    return {
        "relationship_id": stream,
        "checkpoint": {
            "origin": ORIGIN,
            "tree_size": size,
            "root_hash": _b64(root),
            "timestamp": RECORDED.isoformat(),
            "key_name": ORIGIN,
            "public_key": _b64(PUBLIC),
            "note": note,
        },
        "events": events,
    }


BUNDLE = make_bundle()


def test_a_bundle_made_by_hand_verifies() -> None:
    verdict = verify_bundle(copy.deepcopy(BUNDLE), PUBLIC)
    assert verdict.valid, verdict.failures
    assert verdict.events_checked == 3 and verdict.tree_size == 8
    assert verdict.key_id == hashlib.sha256(ORIGIN.encode() + b"\n\x01" + PUBLIC).digest()[:4].hex()


def test_the_payload_may_hold_the_separator() -> None:
    fields = parse_canonical(base64.b64decode(BUNDLE["events"][0]["canonical"]))
    assert fields.payload == b'{"payload": "with \x1f inside"}'
    assert fields.position == 2 and fields.version == 1
    assert fields.recorded_at_us == int(RECORDED.timestamp()) * 1_000_000 + 123456


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


PATHS = _paths(BUNDLE)[1:]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(PATHS), value=JSON)
def test_any_field_replaced_by_anything_is_a_named_failure(
    path: tuple[Any, ...], value: Any
) -> None:
    forged = copy.deepcopy(BUNDLE)
    target = forged
    for part in path[:-1]:
        target = target[part]
    original = target[path[-1]]
    target[path[-1]] = value
    verdict = verify_bundle(forged, PUBLIC)
    if value != original:
        # a field the verifier does not read (the timestamp) may change freely
        assert not verdict.valid or path == ("checkpoint", "timestamp"), (path, value)
        assert all(isinstance(f, str) and f for f in verdict.failures)


@settings(max_examples=100, deadline=None)
@given(JSON)
def test_anything_at_all_is_not_a_bundle(value: Any) -> None:
    verdict = verify_bundle(value, PUBLIC)
    assert not verdict.valid
    assert verdict.failures[0].startswith("malformed bundle")
