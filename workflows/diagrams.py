"""The lifecycle diagram in every format (``diagram``), and as SVG drawn here
from the one state machine (workflows.describe_workflow, which reads the
python-statemachine class): no Graphviz. Phases are boxes in lifecycle order;
a transition to the next phase is a straight arrow, any other one a curve
(above when it goes back, below when it skips ahead), each labelled with its
event type.

The SVG uses presentation attributes and classes only (no `style`
attribute), so the pages' Content-Security-Policy needs no inline style.
Each phase is a ``<g class="phase" data-phase="...">``; the page's script
moves the ``current`` class as the version changes.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from html import escape

from workflows.describe import describe_workflow, dot, mermaid

BOX_W, BOX_H, GAP, TOP = 140, 56, 50, 90
MARGIN = 40


def _x(index: int) -> int:
    return MARGIN + index * (BOX_W + GAP)


@cache
def _diagram_parts() -> tuple[str, tuple[str, ...], int]:
    described = describe_workflow()
    phases = [phase["id"] for phase in described["phases"]]
    names = {phase["id"]: phase["name"] for phase in described["phases"]}
    order = {phase: i for i, phase in enumerate(phases)}
    # one line per (from, to); its label lists the events that cause it
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for transition in described["transitions"]:
        edges[(transition["from"], transition["to"])].append(transition["event"])
    parts: list[str] = []
    labelled_below: set[tuple[str, ...]] = set()
    below = 0
    above = 0
    skips = sum(1 for (a, b) in edges if order[b] > order[a] + 1)
    for (source, target), events in edges.items():
        i, j = order[source], order[target]
        label = escape(", ".join(sorted(set(events))))
        if j == i + 1:  # the next phase: a straight arrow between the boxes
            x1, x2, y = _x(i) + BOX_W, _x(j), TOP + BOX_H // 2
            parts.append(
                f'<line class="edge" x1="{x1}" y1="{y}" x2="{x2 - 2}" y2="{y}" '
                f'marker-end="url(#arrow)"><title>{label}</title></line>'
            )
            parts.append(
                f'<text class="edge-label" x="{_x(j) - GAP // 2}" text-anchor="middle" '
                f'y="{TOP + BOX_H + 18 + 16 * (i % 2)}">{label}</text>'
            )
            continue
        start = _x(i) + BOX_W // 2
        end = _x(j) + BOX_W // 2
        if j < i:  # back: above the boxes
            above += 1
            lift = TOP - 30 - 26 * (above - 1)
            y0 = TOP
            path = f"M{start},{y0} C{start},{lift} {end},{lift} {end},{y0 - 2}"
            text_y = lift + 18
        else:  # ahead, skipping phases: below the boxes
            below += 1
            drop = TOP + BOX_H + 60 + 14 * below
            y0 = TOP + BOX_H
            path = f"M{start + 12},{y0} C{start + 12},{drop} {end - 12},{drop} {end - 12},{y0 + 2}"
            text_y = TOP + BOX_H + 60 + 14 * skips + 16
        parts.append(
            f'<path class="edge" d="{path}" fill="none" marker-end="url(#arrow)">'
            f"<title>{escape(source)} to {escape(target)}: {label}</title></path>"
        )
        key = (target, *sorted(set(events)))
        if j < i or key not in labelled_below:
            labelled_below.add(key)
            mid = (start + end) // 2
            parts.append(
                f'<text class="edge-label" x="{mid}" y="{text_y}" text-anchor="middle">'
                f"{label}{' (from any earlier phase)' if j > i else ''}</text>"
            )
    height = TOP + BOX_H + 60 + 14 * below + 28
    boxes = []
    for phase in phases:
        i = order[phase]
        boxes.append(
            f'<g class="phase" data-phase="{escape(phase)}" id="phase-{escape(phase)}">'
            f'<rect x="{_x(i)}" y="{TOP}" width="{BOX_W}" height="{BOX_H}" rx="10"/>'
            f'<text x="{_x(i) + BOX_W // 2}" y="{TOP + BOX_H // 2 + 6}" '
            f'text-anchor="middle">{escape(names[phase])}</text></g>'
        )
    return "".join(parts) + "".join(boxes), tuple(phases), height


def lifecycle_svg(current: str | None = None) -> str:
    """The lifecycle as an inline SVG element, with ``current`` (a phase)
    highlighted when given."""
    body, phases, height = _diagram_parts()
    width = _x(len(phases)) - GAP + MARGIN
    if current is not None and current in phases:
        marker = f'class="phase" data-phase="{current}"'
        body = body.replace(marker, f'class="phase current" data-phase="{current}"', 1)
    return (
        f'<svg class="lifecycle" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="lifecycle-title">'
        '<title id="lifecycle-title">Lifecycle of a mentoring relationship: '
        f"{escape(', '.join(phases))}</title>"
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrowhead"/></marker></defs>'
        f"{body}</svg>"
    )


def svg() -> str:
    """SVG of the whole lifecycle, drawn in Python (needs nothing installed; the
    same drawing as the pages', with no phase highlighted)."""
    return lifecycle_svg()


def diagram(fmt: str = "mermaid") -> str:
    """The lifecycle diagram in ``mermaid``, ``svg`` or ``dot``.

    Raises ``ValueError`` for another format and :class:`DiagramUnavailable`
    (with the install hint) when DOT's library is missing.
    """
    renderers = {"mermaid": mermaid, "svg": svg, "dot": dot}
    try:
        render = renderers[fmt]
    except KeyError:
        raise ValueError(f"unknown diagram format {fmt!r}; use mermaid, svg or dot") from None
    return render()
