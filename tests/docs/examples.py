"""The example request bodies of docs/events.md, read from the page itself."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs"
EVENTS_MD = DOCS / "events.md"
_JSON_BLOCK = re.compile(r"```json\n(.*?)\n```", re.DOTALL)


def event_examples() -> dict[str, dict[str, Any]]:
    """Each example body in docs/events.md by its `type` (one per type)."""
    examples: dict[str, dict[str, Any]] = {}
    for block in _JSON_BLOCK.findall(EVENTS_MD.read_text()):
        body = json.loads(block)
        assert body["type"] not in examples, f"two examples of {body['type']}"
        examples[body["type"]] = body
    return examples
