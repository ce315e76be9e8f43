"""Small SQL helpers shared by the read models."""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_ident(name: str) -> str:
    """Quote a table name for the few statements that cannot take it as a
    parameter (TRUNCATE); only plain lower-case identifiers are accepted."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'
