"""Evidence bundles built from a real database and verified offline, and
every forged field of a bundle caught, named."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.samples import walk_to
from domain.verifiable.evidence import parse_canonical, verify_bundle
from domain.verifiable.note import raw_public_key, read_checkpoint_file, sign
from service.composition.components import Components, build
from service.http.views import recorded_event
from service.platform.settings import Settings
from service.store.eventstore import EventStore
from service.store.records import NewEvent, StoredRecord
from service.verifiable.evidence import EvidenceRefused
from service.verifiable.tree_builder import catch_up
from workflows import Phase

pytestmark = pytest.mark.db


@pytest.fixture
def components(store: EventStore, dsn: str, tmp_path: Path) -> Components:
    return build(Settings(data_dir=tmp_path), store, dsn)


def _view(components: Components, redacted: bool = False) -> Any:
    def view(record: StoredRecord) -> dict[str, Any]:
        return recorded_event(components.repository.decode(record), redacted=redacted)

    return view


async def _relationship(components: Components, phase: Phase = "cultivation") -> UUID:
    await components.store.append([NewEvent(uuid4(), 1, "noise", b"other stream")])
    relationship = walk_to(phase)
    await components.application.save_decided(relationship)
    await components.store.append([NewEvent(uuid4(), 1, "noise", b"after")])
    await catch_up(components.store)  # the stored tree, as its builder would extend it
    return relationship.id


async def _bundle(components: Components, rid: UUID, **kwargs: Any) -> dict[str, Any]:
    bundle = await components.evidence.bundle(rid, _view(components), **kwargs)
    assert bundle is not None
    return bundle


def _key(components: Components) -> bytes:
    return components.checkpoints.signing_key().public_key


async def test_a_bundle_verifies_offline_with_the_pinned_key(components: Components) -> None:
    rid = await _relationship(components)
    bundle = await _bundle(components, rid)
    # no checkpoint existed: one was published to cover the relationship
    assert bundle["checkpoint"]["tree_size"] == await components.store.max_position()
    assert [e["version"] for e in bundle["events"]] == list(range(1, len(bundle["events"]) + 1))
    for entry in bundle["events"]:
        fields = parse_canonical(base64.b64decode(entry["canonical"]))
        assert fields.position == entry["position"] == entry["event"]["position"]
        assert fields.metadata["type"] == entry["event"]["type"]
    bundle = json.loads(json.dumps(bundle))  # as a file carries it
    verdict = verify_bundle(bundle, _key(components))
    assert verdict.valid, verdict.failures
    assert verdict.key_pinned and verdict.events_checked == len(bundle["events"]) > 5
    unpinned = verify_bundle(bundle)
    assert unpinned.valid and not unpinned.key_pinned


async def test_the_latest_checkpoint_is_reused_and_tree_size_chooses_one(
    components: Components,
) -> None:
    rid = await _relationship(components)
    first = await _bundle(components, rid)
    size = first["checkpoint"]["tree_size"]
    assert (await _bundle(components, rid))["checkpoint"] == first["checkpoint"]
    await components.store.append([NewEvent(uuid4(), 1, "noise", b"later")])
    await catch_up(components.store)
    await components.checkpoints.publish()
    older = await _bundle(components, rid, tree_size=size)
    assert older["checkpoint"]["tree_size"] == size
    assert verify_bundle(older, _key(components)).valid
    newer = await _bundle(components, rid)
    assert newer["checkpoint"]["tree_size"] == size + 1
    assert verify_bundle(newer, _key(components)).valid


async def test_refusals(components: Components) -> None:
    rid = await _relationship(components)
    assert await components.evidence.bundle(uuid4(), _view(components)) is None
    with pytest.raises(EvidenceRefused) as missing:
        await _bundle(components, rid, tree_size=10**9)
    assert missing.value.kind == "not-found"
    await components.checkpoints.publish()
    first_position = (await components.store.read_stream(rid))[0].position
    small = first_position  # a checkpoint of this size covers only version 1
    await components.store.with_connection(
        lambda c: c.execute(
            "INSERT INTO checkpoints (tree_size, root_hash, note, key_name, public_key)"
            " VALUES ($1, $2, 'x', 'k', $2)",
            small,
            b"\x00" * 32,
        )
    )
    with pytest.raises(EvidenceRefused) as short:
        await _bundle(components, rid, tree_size=small)
    assert short.value.kind == "validation-error" and short.value.field == "tree_size"
    with pytest.raises(EvidenceRefused) as beyond:
        await _bundle(components, rid, since=10**9)
    assert beyond.value.kind == "validation-error" and beyond.value.field == "since"


async def test_without_a_key_no_checkpoint_is_published(components: Components) -> None:
    rid = await _relationship(components)
    with pytest.raises(EvidenceRefused) as refused:
        await components.evidence.bundle(rid, _view(components), may_publish=False)
    assert refused.value.kind == "unavailable"


def _forge(bundle: dict[str, Any], change: Any) -> dict[str, Any]:
    forged = copy.deepcopy(bundle)
    change(forged)
    return forged


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _edit_canonical(entry: dict[str, Any], old: bytes, new: bytes) -> None:
    entry["canonical"] = _b64(base64.b64decode(entry["canonical"]).replace(old, new, 1))


FORGERIES: dict[str, tuple[Any, str]] = {
    "payload altered": (
        lambda b: _edit_canonical(b["events"][2], b"mentee", b"mentor"),
        "version 3: chain hash",
    ),
    "event type relabelled": (
        lambda b: b["events"][1]["event"].update(type="relationship.concluded"),
        "version 2: the canonical bytes say type",
    ),
    "event id swapped": (
        lambda b: b["events"][0]["event"].update(id=str(uuid4())),
        "version 1: the canonical bytes say event id",
    ),
    "version renumbered": (
        lambda b: b["events"][1].update(version=7),
        "version 2: missing or out of order",
    ),
    "event removed": (lambda b: b["events"].pop(1), "version 2: missing or out of order"),
    "events reordered": (
        lambda b: b["events"].reverse(),
        "version 1: missing or out of order",
    ),
    "audit path cut": (
        lambda b: b["events"][0]["audit_path"].pop(),
        "version 1: not included in the checkpoint",
    ),
    "position moved": (
        lambda b: b["events"][0].update(position=b["events"][0]["position"] + 1),
        "version 1: the canonical bytes say position",
    ),
    "root replaced": (
        lambda b: b["checkpoint"].update(root_hash=_b64(b"\x01" * 32)),
        "checkpoint.root_hash differs from the signed note",
    ),
    "tree size claimed": (
        lambda b: b["checkpoint"].update(tree_size=b["checkpoint"]["tree_size"] + 5),
        "checkpoint.tree_size differs",
    ),
    "note edited": (
        lambda b: b["checkpoint"].update(note=b["checkpoint"]["note"].replace("\n", "\n1", 1)),
        "checkpoint signature",
    ),
    "relationship id swapped": (
        lambda b: b.update(relationship_id=str(uuid4())),
        "the canonical bytes say relationship id",
    ),
    "recorded_at moved": (
        lambda b: b["events"][0]["event"].update(recorded_at="2001-01-01T00:00:00+00:00"),
        "version 1: recorded_at differs",
    ),
    "actor swapped": (
        lambda b: b["events"][3]["event"].update(actor={"id": "someone", "role": "mentor"}),
        "version 4: actor differs",
    ),
    "occurred_at moved": (
        lambda b: b["events"][3]["event"].update(occurred_at="2020-01-01T00:00:00+00:00"),
        "version 4: occurred_at differs",
    ),
    "not base64": (
        lambda b: b["events"][0].update(canonical="*not base64*"),
        "malformed bundle: version 1: canonical is not standard base64",
    ),
    "events not a list": (lambda b: b.update(events={}), "malformed bundle: events"),
    "no checkpoint": (lambda b: b.pop("checkpoint"), "malformed bundle: checkpoint"),
    "boolean version": (
        lambda b: b["events"][0].update(version=True),
        "malformed bundle: version 1: version is not an integer",
    ),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
async def test_every_forgery_is_named(components: Components, name: str) -> None:
    rid = await _relationship(components)
    bundle = json.loads(json.dumps(await _bundle(components, rid)))
    change, expected = FORGERIES[name]
    verdict = verify_bundle(_forge(bundle, change), _key(components))
    assert not verdict.valid
    assert any(expected in failure for failure in verdict.failures), verdict.failures


async def test_a_bundle_resigned_with_another_key_fails_against_the_pinned_key(
    components: Components,
) -> None:
    rid = await _relationship(components)
    bundle = await _bundle(components, rid)
    impostor = Ed25519PrivateKey.generate()
    text = bundle["checkpoint"]["note"].split("\n\n")[0] + "\n"
    name = bundle["checkpoint"]["key_name"]
    bundle["checkpoint"]["note"] = sign(text, name, impostor)
    bundle["checkpoint"]["public_key"] = _b64(raw_public_key(impostor.public_key()))
    assert verify_bundle(bundle).valid  # consistent with itself, which is all it proves
    verdict = verify_bundle(bundle, _key(components))
    assert not verdict.valid
    assert any("another public key" in f for f in verdict.failures)
    assert any("checkpoint signature" in f for f in verdict.failures)


async def test_consistency_with_a_kept_checkpoint(components: Components) -> None:
    rid = await _relationship(components)
    kept = (await components.checkpoints.publish()).checkpoint
    trusted = read_checkpoint_file(json.dumps(kept.to_dict()))
    for _ in range(3):
        await components.store.append([NewEvent(uuid4(), 1, "noise", b"more")])
    await catch_up(components.store)
    await components.checkpoints.publish()
    key = _key(components)

    same = await _bundle(components, rid, tree_size=kept.tree_size)
    assert verify_bundle(same, key, trusted).valid

    without = await _bundle(components, rid)
    verdict = verify_bundle(without, key, trusted)
    assert not verdict.valid and "carries no consistency proof" in verdict.failures[0]

    proven = await _bundle(components, rid, since=kept.tree_size)
    assert proven["consistency"]["first"] == kept.tree_size
    verdict = verify_bundle(proven, key, trusted)
    assert verdict.valid, verdict.failures
    assert verdict.trusted_size == kept.tree_size

    # a kept checkpoint of a log that was different: same size, another root
    forged_root = bytearray(kept.root_hash)
    forged_root[0] ^= 1
    impostor = Ed25519PrivateKey.generate()
    text = f"{kept.origin}\n{kept.tree_size}\n{_b64(bytes(forged_root))}\n"
    other = read_checkpoint_file(sign(text, kept.key_name, impostor))
    verdict = verify_bundle(proven, key, other)
    assert any("trusted checkpoint signature" in f for f in verdict.failures)

    broken = _forge(proven, lambda b: b["consistency"]["proof"].reverse())
    if len(proven["consistency"]["proof"]) > 1:
        assert not verify_bundle(broken, key, trusted).valid
    wrong_sizes = _forge(proven, lambda b: b["consistency"].update(first=1))
    verdict = verify_bundle(wrong_sizes, key, trusted)
    assert any("other sizes" in f for f in verdict.failures)


async def test_inclusion_in_the_latest_checkpoint(
    components: Components, store: EventStore
) -> None:
    rid = await _relationship(components)
    key = _key(components)
    assert await components.evidence.inclusion(rid, key) is None  # nothing published yet
    await components.checkpoints.publish()
    status = await components.evidence.inclusion(rid, key)
    assert status is not None and status["included"] and status["signature_valid"]
    assert status["events_after"] == 0 and status["first_not_included_version"] is None

    other_key = raw_public_key(Ed25519PrivateKey.generate().public_key())
    forged = await components.evidence.inclusion(rid, other_key)
    assert forged is not None and not forged["signature_valid"] and not forged["included"]

    # rewrite version 2 in place, chain recomputed or not: the signed root disagrees
    await store.with_connection(
        lambda c: c.execute(
            "UPDATE events SET payload = payload || '\\x20'::bytea"
            " WHERE stream_id = $1 AND version = 2",
            rid,
        )
    )
    status = await components.evidence.inclusion(rid, key)
    assert status is not None and not status["included"]
    # version 1's audit path may pass through the altered leaf's subtree, so
    # the first event whose proof fails is at or before the altered one
    assert status["first_not_included_version"] in (1, 2)
