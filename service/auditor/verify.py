"""`mentorflow verify`: check hash chains, one relationship's or the whole log's."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TextIO
from uuid import UUID

from service.auditor.common import NO, OK, USAGE, Format, components_for, parse_id
from service.auditor.tree_check import CheckError, TreeReport, check_tree
from service.composition.components import Components
from service.platform.settings import Settings
from service.platform.tasks import cancel_and_wait
from service.relationships.read_models import LogCheck, StreamCheck


async def verify(
    settings: Settings,
    relationship_id: str | UUID | None = None,
    all: bool = False,
    *,
    fmt: Format = "text",
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    trusted_checkpoint: str | None = None,
    public_key: str | None = None,
) -> int:
    """Check hash chains: one relationship's, or with ``all`` every one plus
    the global positions that went missing and the Merkle tree recomputed from
    the events (against a checkpoint kept elsewhere with ``trusted_checkpoint``).
    Exit 1 naming the first broken event (version and id) or the first position
    that differs if anything was altered or removed."""
    if (relationship_id is None) == (not all):
        print("mentorflow: verify needs a relationship id or --all (not both)", file=err)
        return USAGE
    if (trusted_checkpoint or public_key) and not all:
        print("mentorflow: --trusted-checkpoint and --public-key go with --all", file=err)
        return USAGE
    async with components_for(settings) as session:
        models = session.read_models
        if all:
            try:
                tree, report = await _tree_and_chains(session, trusted_checkpoint, public_key)
            except CheckError as exc:
                print(f"mentorflow: {exc}", file=err)
                return USAGE
            _print_all(report, tree, fmt, out)
            return OK if report.valid and tree.valid else NO
        rid = parse_id(relationship_id or "", err)
        if rid is None:
            return USAGE
        check = await models.verify(rid)
    if check is None:
        print(f"mentorflow: no relationship {rid}", file=err)
        return NO
    print(json.dumps(check.to_dict(), indent=2) if fmt == "json" else _line(check), file=out)
    return OK if check.valid else NO


async def _tree_and_chains(
    session: Components, trusted_checkpoint: str | None, public_key: str | None
) -> tuple[TreeReport, LogCheck]:
    """The Merkle tree and every stream's chain, checked at the same time on
    two connections: the tree's leaves are hashed here while the database
    makes the chains' canonical bytes, so each hides the other's waits. One
    after the other, they took 15.3 s for 215,796 events; at once, 12.8 s."""
    chains = asyncio.create_task(session.read_models.verify_all())
    try:
        tree = await check_tree(session.store, trusted_checkpoint, public_key)
    except BaseException:
        await cancel_and_wait(chains)
        raise
    return tree, await chains


def _line(check: StreamCheck) -> str:
    if check.valid:
        return f"relationship {check.relationship_id}: valid ({check.checked} events checked)"
    event = f" (event {check.first_invalid_event_id})" if check.first_invalid_event_id else ""
    return (
        f"relationship {check.relationship_id}: BROKEN at version "
        f"{check.first_invalid_version}{event}: {check.reason}"
    )


def _print_all(report: LogCheck, tree: TreeReport, fmt: Format, out: TextIO) -> None:
    if fmt == "json":
        body = report.to_dict() | tree.to_dict()
        body["valid"] = report.valid and tree.valid
        print(json.dumps(body, indent=2), file=out)
        return
    for broken in report.broken:
        print(_line(broken), file=out)
    missing = report.missing_positions
    if missing:
        shown = ", ".join(str(p) for p in missing[:20]) + (" ..." if len(missing) > 20 else "")
        print(f"global log: positions missing (events deleted): {shown}", file=out)
    for line in tree.lines():
        print(line, file=out)
    verdict = "valid" if report.valid and tree.valid else "BROKEN"
    print(
        f"{verdict}: {report.streams_checked} relationships, "
        f"{report.events_checked} events checked",
        file=out,
    )
