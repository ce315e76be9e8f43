"""Writes docs/events.md, the event catalogue, from the declarations the
service validates and decides with (and the example bodies below).

    .venv/bin/python docs/tools/events_md.py > docs/events.md

tests/unit/test_docs_events.py fails when docs/events.md differs from what
this prints, so the catalogue cannot drift from the code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from domain import (
    CONFIDENTIAL_FIELDS,
    ERASABLE_FIELDS,
    RECORDABLE_TYPES,
    data_schema,
    event_class,
)
from service.webhooks.outbox import PHASE_CHANGED, RISK_TYPES, THIN_FIELDS
from workflows.describe import describe_workflow

MENTEE = {"id": "mentee-1", "role": "mentee"}
MENTOR = {"id": "mentor-7", "role": "mentor"}

# One example request body per event type, in an order one relationship can
# be taken through (relationship.withdrawn aside: it ends a relationship).
EXAMPLES: dict[str, dict[str, Any]] = {
    "reflection.recorded": {
        "data": {
            "author_role": "mentee",
            "kind": "initial",
            "development_areas": ["grant writing", "lab leadership"],
            "values": "candour, rigour",
            "work_style": "writes early, revises often",
            "notes": "I want to lead my own grant within two years",
        },
        "actor": MENTEE,
    },
    "identification.started": {"actor": MENTEE},
    "candidate.proposed": {
        "data": {
            "mentor_id": "mentor-7",
            "proposed_by": "mentee",
            "match_score": 0.82,
            "rationale": "funded in the same field",
        },
        "actor": MENTEE,
    },
    "candidate.declined": {
        "data": {"mentor_id": "mentor-9", "by": "mentor", "reason_code": "no_capacity"},
        "actor": MENTEE,
    },
    "candidate.met": {
        "data": {"mentor_id": "mentor-7", "met_at": "2026-01-20T15:00:00Z", "notes": "good fit"},
        "actor": MENTEE,
    },
    "mentor.selected": {"data": {"mentor_id": "mentor-7", "mentor_consent": True}, "actor": MENTEE},
    "agreement.proposed": {
        "data": {
            "objectives": ["publish a first-author paper"],
            "goals": [
                {
                    "id": "g1",
                    "statement": "submit the paper",
                    "horizon": "short",
                    "measure": "manuscript submitted",
                    "target_date": "2026-09-30",
                }
            ],
            "cadence": {"frequency": "monthly", "duration_minutes": 60, "mode": "video"},
            "agenda_owner": "mentee",
            "confidentiality": "discussions stay between us",
            "time_commitment": {"mentor_hours_per_month": 2, "mentee_hours_per_month": 8},
            "deliverables": [
                {
                    "id": "d1",
                    "description": "first-author paper on the pilot study",
                    "kind": "manuscript",
                    "authorship": "mentee first, mentor senior",
                    "due_date": "2027-01-15",
                }
            ],
            "start_date": "2026-02-01",
            "end_date": "2027-01-31",
        },
        "actor": MENTEE,
    },
    "agreement.signed": {"data": {"by": "mentee", "agreement_version": 1}, "actor": MENTEE},
    "relationship.established": {"actor": MENTEE},
    "relationship.paused": {
        "data": {"reason": "parental leave", "expected_resume": "2026-04-01"},
        "actor": MENTEE,
    },
    "relationship.resumed": {"actor": MENTEE},
    "meeting.scheduled": {
        "data": {
            "meeting_id": "m1",
            "scheduled_for": "2026-02-10T15:00:00Z",
            "agenda": ["outline of the paper"],
        },
        "actor": MENTEE,
    },
    "meeting.held": {
        "data": {
            "meeting_id": "m1",
            "held_at": "2026-02-10T15:00:00Z",
            "duration_minutes": 55,
            "agenda_set_by": "mentee",
            "topics": ["outline"],
            "action_items": [
                {
                    "id": "a1",
                    "description": "send outline",
                    "owner": "mentee",
                    "due_date": "2026-02-20",
                }
            ],
            "notes": "confidential meeting notes",
        },
        "actor": MENTEE,
    },
    "meeting.missed": {
        "data": {
            "meeting_id": "m2",
            "scheduled_for": "2026-03-10T15:00:00Z",
            "reason_code": "illness",
        },
        "actor": MENTEE,
    },
    "action_item.completed": {"data": {"action_item_id": "a1"}, "actor": MENTEE},
    "goal.progressed": {
        "data": {"goal_id": "g1", "status": "on_track", "note": "draft at 60%"},
        "actor": MENTOR,
    },
    "feedback.given": {
        "data": {"from_role": "mentor", "rating": 5, "comment": "well prepared"},
        "actor": MENTOR,
    },
    "concern.raised": {
        "data": {"category": "unresponsive", "severity": "low", "detail": "two emails unanswered"},
        "actor": MENTEE,
    },
    "concern.resolved": {
        "data": {"concern_id": "concern-1", "resolution": "addressed", "note": "mentor replied"},
        "actor": {"id": "admin-1", "role": "program_admin"},
    },
    "advocacy.recorded": {
        "data": {
            "kind": "introduction",
            "description": "introduced to the editor of the field's main journal",
            "occurred_on": "2026-03-02",
        },
        "actor": MENTOR,
    },
    "risk.flagged": {
        "data": {
            "reasons": [
                {
                    "code": "no_recent_meeting",
                    "since": "2026-03-20T15:00:00Z",
                    "detail": "no meeting since 2026-02-10; the monthly cadence wanted one by"
                    " 2026-03-20",
                }
            ]
        },
        "actor": {"id": "mentorflow", "role": "system"},
    },
    "risk.cleared": {
        "data": {"codes": ["no_recent_meeting"]},
        "actor": {"id": "mentorflow", "role": "system"},
    },
    "review.started": {"data": {"trigger": "term_ended"}, "actor": MENTEE},
    "relationship.refined": {"data": {"reason": "new objectives for year two"}, "actor": MENTEE},
    "relationship.concluded": {
        "data": {"outcome": "goals_achieved", "summary": "paper submitted"},
        "actor": MENTEE,
    },
    "relationship.withdrawn": {
        "data": {"reason_code": "mentee_left_program"},
        "actor": {"id": "admin-1", "role": "program_admin"},
    },
}


# Checks of `data` against the relationship's state (domain/relationship.py,
# each event class's `references`): a failure is a 422 `validation-error`.
STATE_CHECKS: dict[str, list[str]] = {
    "candidate.proposed": [
        "`mentor_id` is not the mentee",
        "`mentor_id` is not already a candidate (one who declined may be proposed again)",
    ],
    "candidate.met": ["`mentor_id` was proposed (`candidate.proposed`) and has not declined"],
    "candidate.declined": ["`mentor_id` was proposed (`candidate.proposed`) and has not declined"],
    "agreement.proposed": [
        "goal ids are unique within the agreement",
        "deliverable ids are unique within the agreement",
        "`version` is assigned by the service (1, 2, ...): do not send it",
    ],
    "agreement.signed": [
        "an agreement was proposed",
        "`agreement_version` is the latest version, proposed since the last refinement",
        "each party (`by`) signs a version once",
    ],
    "meeting.scheduled": ["`meeting_id` is not already scheduled, held or missed"],
    "meeting.held": [
        "`meeting_id`, if given, was not already held or missed (an id never scheduled is"
        " an unscheduled meeting with that id)",
        "action item ids are new and unique",
    ],
    "meeting.missed": ["`meeting_id`, if given, was not already held or missed"],
    "action_item.completed": [
        "`action_item_id` is an open action item (not unknown, not completed)"
    ],
    "goal.progressed": ["`goal_id` is a goal of the agreement"],
    "concern.raised": [
        "`concern_id`, if given, is not already used by a concern of this relationship"
        " (without it the service assigns `concern-<n>`)"
    ],
}


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return dict(root["$defs"][ref.split("/")[-1]])
    return schema


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = [o for o in schema.get("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        return {**{k: v for k, v in schema.items() if k != "anyOf"}, **options[0]}
    return schema


def _describe(schema: dict[str, Any], root: dict[str, Any]) -> str:
    schema = _resolve(_non_null(schema), root)
    kind = schema.get("type", "any")
    parts: list[str] = []
    if "enum" in schema:
        parts.append(" \\| ".join(f"`{v}`" for v in schema["enum"]))
    elif "const" in schema:
        parts.append(f"`{schema['const']}`")
    elif kind == "array":
        item = _resolve(_non_null(schema.get("items", {})), root)
        if item.get("type") == "object":
            parts.append("list of objects (below)")
        else:
            parts.append(f"list of {_describe(item, root)}")
    elif "format" in schema:
        parts.append(f"{kind} ({schema['format']})")
    else:
        parts.append(str(kind))
    limits = []
    if "minimum" in schema:
        limits.append(f"≥ {schema['minimum']}")
    if "maximum" in schema:
        limits.append(f"≤ {schema['maximum']}")
    if "minLength" in schema:
        limits.append(f"{schema['minLength']}+ chars")
    if "maxLength" in schema:
        limits.append(f"≤ {schema['maxLength']} chars")
    if "minItems" in schema:
        limits.append(f"≥ {schema['minItems']} items")
    if "maxItems" in schema:
        limits.append(f"≤ {schema['maxItems']} items")
    if "pattern" in schema and kind == "string" and "format" not in schema:
        limits.append("not blank")
    if limits:
        parts.append("; " + ", ".join(limits))
    return "".join(parts)


def _rows(
    schema: dict[str, Any],
    root: dict[str, Any],
    prefix: str,
    confidential: frozenset[str],
    erasable: frozenset[str] = frozenset(),
) -> list[str]:
    rows = []
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        path = prefix + name
        flags = []
        if name in required:
            flags.append("required")
        if not prefix and name in confidential:
            flags.append("confidential")
        if path in erasable or path + "[]" in erasable:
            flags.append("erasable")
        rows.append(f"| `{path}` | {_describe(prop, root)} | {', '.join(flags)} |")
        inner = _resolve(_non_null(prop), root)
        if inner.get("type") == "array":
            item = _resolve(_non_null(inner.get("items", {})), root)
            if item.get("type") == "object":
                rows += _rows(item, root, path + "[].", confidential, erasable)
        elif inner.get("type") == "object" and inner.get("properties"):
            rows += _rows(inner, root, path + ".", confidential, erasable)
    return rows


def _guards_by_event() -> dict[str, list[tuple[str, str, list[dict[str, str]]]]]:
    described = describe_workflow()
    guards: dict[str, list[tuple[str, str, list[dict[str, str]]]]] = {}
    for t in (*described["transitions"], *described["in_phase_guards"]):
        guards.setdefault(t["event"], []).append((t["from"], t["to"], t["guards"]))
    return guards


def _phases_by_event() -> dict[str, list[str]]:
    described = describe_workflow()
    phases: dict[str, list[str]] = {}
    for t in described["transitions"]:
        phases.setdefault(t["event"], []).append(t["from"])
    for e in described["in_phase_events"]:
        phases.setdefault(e["event"], []).extend(
            p for p in e["phases"] if p not in phases.get(e["event"], [])
        )
    return phases


def render() -> str:
    described = describe_workflow()
    transitions = {t["event"] for t in described["transitions"]}
    phases = _phases_by_event()
    guards = _guards_by_event()
    out = [
        "# Event catalogue",
        "",
        "<!-- Generated by docs/tools/events_md.py from the service's own declarations;"
        " do not edit by hand. -->",
        "",
        "Every event a writer may post to `POST /v1/relationships/{id}/events`, with the",
        "fields of its `data` (the same declarations the service validates with), the",
        "phases that accept it, the guards it must meet, an example request body and",
        "the webhook types it is delivered as. The opening event,",
        "`relationship.opened`, is recorded by `POST /v1/relationships` only.",
        "",
        "How to read the tables: *required* fields must be present; other fields may be",
        "left out or sent as `null`. Unknown fields are refused (422 `validation-error`).",
        "*Erasable* fields are free text that may describe a person: when",
        "`MENTORFLOW_CIPHER_KEY` is set they are stored encrypted under the",
        "relationship's own data key, and once the relationship's personal data is",
        'erased they read `"[erased]"` for every role (see [erasure.md](erasure.md)).',
        '*Confidential* fields are erasable too, are shown as `"[redacted]"` to the',
        '`auditor` role and are never sent in a webhook. "not blank" means the text must',
        "hold a character that is not white space. Date-times must carry a time zone.",
        "",
        "Errors, in the order the service checks: unknown `type` or bad envelope 422",
        "`validation-error`; not accepted in the current phase (or while paused) 409",
        "`invalid-transition` with `allowed_events`; bad `data` 422 `validation-error`",
        "with `errors: [{path, message}]`; a guard unmet 422 `guard-failed` with",
        "`unmet: [..]`.",
        "",
        "Every recorded event is delivered to webhook subscribers as",
        "`relationship.<type>` (CloudEvent type `org.mentorflow.relationship.<type>`);",
        "an event that changes the phase is also delivered as",
        f"`{PHASE_CHANGED}`. See [webhooks.md](webhooks.md).",
        "",
        "| type | changes phase | accepted in |",
        "|---|---|---|",
    ]
    for event_type in sorted(RECORDABLE_TYPES):
        changes = "yes" if event_type in transitions else "no"
        accepted = ", ".join(phases.get(event_type, []))
        anchor = event_type.replace(".", "")
        out.append(f"| [`{event_type}`](#{anchor}) | {changes} | {accepted} |")
    out.append("")
    for event_type in sorted(RECORDABLE_TYPES):
        schema = data_schema(event_type)
        confidential = CONFIDENTIAL_FIELDS.get(event_type, frozenset())
        out += [f"## {event_type}", ""]
        out.append(f"Accepted in: {', '.join(phases.get(event_type, []))}.")
        if event_class(event_type).recorded_by_service:
            out.append(
                "Recorded by the service only (its risk worker, actor role `system`):"
                " a client's post is refused (403 `forbidden`)."
            )
        moves = [f"{src} → {dst}" for src, dst, _ in guards.get(event_type, []) if src != dst]
        if moves:
            out.append(f"Moves the relationship: {'; '.join(moves)}.")
        out.append("")
        rows = _rows(schema, schema, "", confidential, frozenset(ERASABLE_FIELDS[event_type]))
        if rows:
            out += ["| field | type and constraints | |", "|---|---|---|", *rows, ""]
        else:
            out += ["No `data` (send none, or `{}`).", ""]
        checks = list(STATE_CHECKS.get(event_type, []))
        checks += [
            f"`{name}` is not later than the moment the request is decided"
            for name in event_class(event_type).not_in_future
        ]
        if checks:
            out += [
                "Checked against the relationship (unmet: 422 `validation-error`):",
                "",
                *(f"- {c}." for c in checks),
                "",
            ]
        guard_lines, pause_lines = [], []
        for src, dst, listed in guards.get(event_type, []):
            where = f"{src} → {dst}" if src != dst else src
            for g in listed:
                if g["kind"] == "pause":
                    pause_lines.append(f"- ({where}) only when {g['rule']}.")
                else:
                    guard_lines.append(f'- ({where}) {g["rule"]}. Unmet: "{g["unmet"]}".')
        if pause_lines:
            out += [
                "Pause (otherwise not accepted: 409 `invalid-transition`, `paused` true):",
                "",
                *pause_lines,
                "",
            ]
        if guard_lines:
            out += [
                "Guards (unmet: 422 `guard-failed`, each listed in `unmet`):",
                "",
                *guard_lines,
                "",
            ]
        thin = sorted(
            f for f in schema.get("properties", {}) if f in THIN_FIELDS and f not in confidential
        )
        hooks = [f"`relationship.{event_type}`"]
        if event_type in transitions:
            hooks.insert(0, f"`{PHASE_CHANGED}`")
        out.append(
            f"Webhook types: {', '.join(hooks)}. Webhook `data` of `relationship.{event_type}`:"
            " `relationship_id`, `event_type`, `version`, `phase`"
            + "".join(f", `{f}`" for f in thin)
            + (", `program_id`, `codes`" if event_type in RISK_TYPES else "")
            + "."
        )
        example = (
            "Example (as the service records it):"
            if event_class(event_type).recorded_by_service
            else "Example (`POST /v1/relationships/{id}/events`):"
        )
        out += ["", example, "", "```json"]
        out.append(json.dumps({"type": event_type, **EXAMPLES[event_type]}, indent=2))
        out += ["```", ""]
    return "\n".join(out + _erasure_section())


def _erasure_section() -> list[str]:
    """The erasable fields of every event type, and the erasure's own event."""
    out = [
        "## Erasable fields, by event type",
        "",
        "Declared once, on each field (`PersonalText`, `RequiredPersonalText` and",
        "`PersonalLabel` in `domain/values.py`); `[]` is each item of a list. See",
        "[erasure.md](erasure.md).",
        "",
        "| type | erasable fields |",
        "|---|---|",
    ]
    for event_type in sorted(ERASABLE_FIELDS):
        paths = ERASABLE_FIELDS[event_type]
        listed = ", ".join(f"`{path}`" for path in paths) if paths else "—"
        out.append(f"| `{event_type}` | {listed} |")
    erased = "personal_data.erased"
    schema = data_schema(erased)
    out += [
        "",
        f"## {erased}",
        "",
        "Recorded only by `POST /v1/relationships/{id}/erasure` (admin), in every",
        "phase, concluded included; posting it as an event is a 422 `validation-error`.",
        "Its `reason` is kept for good and is not erasable: it must not describe a",
        "person (give a request reference or a legal basis).",
        "",
        "| field | type and constraints | |",
        "|---|---|---|",
        *_rows(schema, schema, "", frozenset()),
        "",
        f"Webhook types: `relationship.{erased}`. Webhook `data`: `relationship_id`,"
        " `event_type`, `version`, `phase`.",
        "",
    ]
    return out


if __name__ == "__main__":
    sys.stdout.write(render())
