"""What the auditor's commands share: the components they open, ids, exit codes."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Literal, TextIO
from uuid import UUID

from service.composition import components as composition
from service.platform.settings import Settings

Format = Literal["json", "text"]
OK, NO, USAGE = 0, 1, 2
"""Exit codes: success; the answer is "no" (unknown, broken); a usage error."""


def components_for(
    settings: Settings, *, existing: bool = True
) -> AbstractAsyncContextManager[composition.Components]:
    """The process's components; `existing`: the command reads, so it refuses
    to start with no database."""
    return composition.opened(settings, existing=existing)


def parse_id(raw: str | UUID, err: TextIO) -> UUID | None:
    if isinstance(raw, UUID):
        return raw
    try:
        return UUID(raw)
    except ValueError:
        print(f"mentorflow: {raw!r} is not a relationship id (a UUID)", file=err)
        return None
