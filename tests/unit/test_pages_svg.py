"""The lifecycle diagram of the pages is drawn from the one state machine."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import workflows
from workflows.diagrams import lifecycle_svg

SVG = "{http://www.w3.org/2000/svg}"


def test_every_phase_and_transition_of_the_machine_is_drawn() -> None:
    described = workflows.describe_workflow()
    root = ET.fromstring(lifecycle_svg())
    phases = [g.get("data-phase") for g in root.iter(f"{SVG}g") if g.get("data-phase")]
    assert phases == [phase["id"] for phase in described["phases"]]
    text = " ".join(
        node.text or "" for node in root.iter() if node.tag in (f"{SVG}text", f"{SVG}title")
    )
    for transition in described["transitions"]:
        assert transition["event"] in text
    edges = [n for n in root.iter() if n.get("class") == "edge"]
    assert len(edges) == len({(t["from"], t["to"]) for t in described["transitions"]})


def test_the_current_phase_is_highlighted_and_nothing_needs_inline_style() -> None:
    drawn = lifecycle_svg("cultivation")
    root = ET.fromstring(drawn)
    current = [
        g.get("data-phase") for g in root.iter(f"{SVG}g") if "current" in (g.get("class") or "")
    ]
    assert current == ["cultivation"]
    assert lifecycle_svg("no-such-phase") == lifecycle_svg()
    assert not re.search(r"\sstyle=|<style|<script", drawn)
