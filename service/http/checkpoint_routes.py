"""Verifiable history over HTTP: signed checkpoints, the public key that
signs them, and a relationship's evidence bundle (service.verifiable)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from domain.event_view import event_view
from domain.metadata import read_metadata
from service.composition.components import Components
from service.http.context import principal, services
from service.http.json_text import json_response
from service.http.problems import Problem
from service.http.requests import MAX_INTEGER, path_uuid, query_int
from service.http.routing import ADMIN, READ, Param, Route, url_of
from service.http.views import recorded_event
from service.store.records import StoredRecord
from service.verifiable.evidence import EventView, EvidenceRefused

_NO_CHECKPOINT = "no checkpoint has been published yet"


async def latest_checkpoint(request: web.Request) -> web.Response:
    found = await services(request).checkpoints.latest()
    if found is None:
        raise Problem("not-found", _NO_CHECKPOINT)
    return json_response(found.to_dict())


async def checkpoint_of_size(request: web.Request) -> web.Response:
    raw = request.match_info["tree_size"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16 or int(raw) > MAX_INTEGER:
        raise Problem.invalid(
            "path.tree_size",
            f"must be a whole number from 0 to {MAX_INTEGER}",
            f"tree_size {raw[:40]!r} is not a tree size",
        )
    found = await services(request).checkpoints.at(int(raw))
    if found is None:
        raise Problem("not-found", f"no checkpoint of tree size {int(raw)}")
    return json_response(found.to_dict())


async def public_key(request: web.Request) -> web.Response:
    s = services(request)
    key = s.checkpoints.signing_key()
    return json_response(
        {
            "key_name": await s.checkpoints.origin(),
            "public_key": key.public_key_b64,
            "pem": key.public_pem,
        }
    )


async def publish_checkpoint(request: web.Request) -> web.Response:
    """Publish a checkpoint of the log as it is now; when it has not grown
    since the latest one, that one is answered (201 either way). An `Idempotency-Key`
    replays the first answer, as on every POST (service.http.idempotency)."""
    published = await services(request).checkpoints.publish()
    body = published.checkpoint.to_dict()
    location = url_of(request, checkpoint_of_size, tree_size=str(body["tree_size"]))
    return json_response(body, status=201, headers={"Location": location})


def evidence_view(components: Components, *, redacted: bool) -> EventView:
    """Each event of a bundle as the role reads it (service.http.views). A
    payload that no longer decodes (altered in the database) does not fail the
    bundle: the event then shows its stored envelope and a `decode_error`,
    and the verifier says what no longer matches."""

    def view(record: StoredRecord) -> dict[str, Any]:
        try:
            return recorded_event(components.repository.decode(record), redacted=redacted)
        except Exception as exc:  # any decoding failure: the payload is not what was stored
            return _undecodable(record, f"{type(exc).__name__}: {exc}"[:500])

    return view


def _undecodable(record: StoredRecord, error: str) -> dict[str, Any]:
    metadata = record.metadata if isinstance(record.metadata, dict) else {}
    body: dict[str, Any] = {
        "id": str(record.event_id),
        "type": str(metadata.get("type", "")),
        "relationship_id": str(record.stream_id),
        "version": record.version,
        "position": record.position,
    }
    try:
        view = event_view(
            event_id=record.event_id,
            version=record.version,
            position=record.position,
            recorded_at=record.recorded_at,
            meta=read_metadata(metadata),
            event=None,
            redacted=True,
        )
        body |= {k: view[k] for k in _ENVELOPE}
    except (TypeError, ValueError):  # the envelope is altered too: identity only
        pass
    return body | {"data": None, "decode_error": error}


_ENVELOPE = (
    "occurred_at", "recorded_at", "actor", "source", "correlation_id", "causation_id",
)  # fmt: skip


async def evidence(request: web.Request) -> web.Response:
    s = services(request)
    relationship_id = path_uuid(request, "id", "relationship")
    view = evidence_view(s, redacted=principal(request).role == "auditor")
    try:
        bundle = await s.evidence.bundle(
            relationship_id,
            view,
            tree_size=query_int(request, "tree_size", low=0),
            since=query_int(request, "since", low=1),
        )
    except EvidenceRefused as exc:
        if exc.kind == "validation-error":
            raise Problem.invalid(f"query.{exc.field}", str(exc)) from None
        headers = {"Retry-After": "1"} if exc.kind == "unavailable" else None
        raise Problem(exc.kind, str(exc), headers=headers) from None
    if bundle is None:
        raise Problem("not-found", f"no relationship {relationship_id}")
    return json_response(bundle)


TREE_SIZE = Param(
    "tree_size", "path", {"type": "string", "pattern": "^[0-9]{1,16}$"}, "tree size", True
)
_ID = Param("id", "path", {"type": "string", "format": "uuid"}, "relationship id", required=True)
_SIZE = {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER}

ROUTES = [
    # literal paths before the template, so /latest is not read as a tree size
    Route("GET", "/v1/checkpoints/latest", latest_checkpoint, READ,
          "Read the latest signed checkpoint", "verifiable history", ok_schema="Checkpoint",
          errors=("not-found",), program_scoped=True),
    Route("GET", "/v1/checkpoints/public-key", public_key, None,
          "Read the public key that signs checkpoints (no token needed)", "verifiable history",
          ok_schema="CheckpointPublicKey"),
    Route("GET", "/v1/checkpoints/{tree_size}", checkpoint_of_size, READ,
          "Read the signed checkpoint of a tree size", "verifiable history",
          ok_schema="Checkpoint", errors=("not-found", "validation-error"), params=(TREE_SIZE,),
          program_scoped=True),
    Route("POST", "/v1/checkpoints", publish_checkpoint, ADMIN,
          "Publish a checkpoint now (the latest one when the log has not grown)",
          "verifiable history", ok_status=201, ok_schema="Checkpoint", ok_headers=("Location",)),
    Route("GET", "/v1/relationships/{id}/evidence", evidence, frozenset({"auditor", "admin"}),
          "Read a relationship's evidence bundle (verifiable offline)", "verifiable history",
          ok_schema="EvidenceBundle", errors=("not-found", "validation-error"),
          params=(_ID,
                  Param("tree_size", "query", _SIZE,
                        "use the stored checkpoint of this size (default: the latest, published"
                        " first when it does not cover the relationship's last event)"),
                  Param("since", "query", {**_SIZE, "minimum": 1},
                        "also prove the tree of this size (a checkpoint you kept) consistent"
                        " with the bundle's"))),
]  # fmt: skip

_B64 = {"type": "string", "contentEncoding": "base64"}
_CHECKPOINT_PROPERTIES = {
    "origin": {"type": "string"},
    "tree_size": {"type": "integer", "minimum": 0},
    "root_hash": _B64,
    "timestamp": {"type": "string", "format": "date-time"},
    "key_name": {"type": "string"},
    "public_key": _B64,
    "note": {"type": "string", "description": "the C2SP signed note (tlog-checkpoint)"},
}
CHECKPOINT_STATUS = {
    "type": ["object", "null"],
    "description": "inclusion of the relationship's events in the latest checkpoint"
    " (null before the first checkpoint)",
    "required": ["tree_size", "root_hash", "included", "signature_valid"],
    "properties": {
        "tree_size": {"type": "integer"},
        "root_hash": _B64,
        "timestamp": {"type": "string", "format": "date-time"},
        "included": {"type": "boolean"},
        "signature_valid": {"type": "boolean"},
        "events_covered": {"type": "integer"},
        "events_after": {"type": "integer"},
        "first_not_included_version": {"type": ["integer", "null"]},
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "UndecodableEvent": {
        "type": "object",
        "description": "an event whose stored payload no longer decodes (altered in the database)",
        "required": ["id", "type", "relationship_id", "version", "position", "data",
                     "decode_error"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "type": {"type": "string"},
            "relationship_id": {"type": "string", "format": "uuid"},
            "version": {"type": "integer"},
            "position": {"type": "integer"},
            "data": {"type": "null"},
            "decode_error": {"type": "string"},
        },
    },
    "Checkpoint": {
        "type": "object",
        "additionalProperties": False,
        "required": sorted(_CHECKPOINT_PROPERTIES),
        "properties": _CHECKPOINT_PROPERTIES,
    },
    "CheckpointPublicKey": {
        "type": "object",
        "additionalProperties": False,
        "required": ["key_name", "public_key", "pem"],
        "properties": {
            "key_name": {"type": "string"},
            "public_key": _B64,
            "pem": {"type": "string"},
        },
    },
    "EvidenceBundle": {
        "type": "object",
        "additionalProperties": False,
        "required": ["relationship_id", "checkpoint", "events"],
        "properties": {
            "relationship_id": {"type": "string", "format": "uuid"},
            "checkpoint": {"$ref": "#/components/schemas/Checkpoint"},
            "events": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["position", "version", "canonical", "chain_hash", "audit_path",
                                 "event"],
                    "properties": {
                        "position": {"type": "integer", "minimum": 1},
                        "version": {"type": "integer", "minimum": 1},
                        "canonical": _B64,
                        "chain_hash": _B64,
                        "audit_path": {"type": "array", "items": _B64},
                        "event": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/RecordedEvent"},
                                {"$ref": "#/components/schemas/UndecodableEvent"},
                            ]
                        },
                    },
                },
            },
            "consistency": {
                "type": "object",
                "additionalProperties": False,
                "required": ["first", "second", "proof"],
                "properties": {
                    "first": {"type": "integer", "minimum": 1},
                    "second": {"type": "integer", "minimum": 1},
                    "proof": {"type": "array", "items": _B64},
                },
            },
        },
    },
}  # fmt: skip
