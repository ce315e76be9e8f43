"""Routes of the web pages: `/ui/` (relationships), `/ui/relationships/{id}`,
`/ui/mentees/{mentee_id}` (a mentee's mentoring network), `/ui/stats`, and
their static files under `/ui/static/`.

The pages are shells: templates rendered with autoescape that hold no
relationship data, so they need no token (a navigation cannot carry the
`Authorization` header). Their script fetches the JSON API with the token
kept in the tab (sessionStorage) and renders with DOM APIs (`textContent`),
so authorization, program scopes and redaction are exactly the API's.

These routes are added to aiohttp directly, not to the route table
(service.http.routing): they are not API operations, so they stay out of the
OpenAPI document, the token check and the declared-query check (the page's
script reads `?version=`, `?as_of=` and the list's filters itself and hands
them to the API, which validates them).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from service.pages.headers import strict_page_headers
from workflows import PHASES
from workflows.diagrams import lifecycle_svg

UI = "/ui"
STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = {
    "pages.js": "text/javascript",
    "pages.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
"""Every file the pages load; nothing else under /ui/static/ is served."""


def add_pages(app: web.Application) -> None:
    """Register the pages and their static files on the application."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("service.pages", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_get(UI, to_index)
    app.router.add_get(UI + "/", relationships_page, name="ui_relationships")
    app.router.add_get(UI + "/relationships/{id}", relationship_page, name="ui_relationship")
    app.router.add_get(UI + "/mentees/{mentee_id}", mentee_page, name="ui_mentee")
    app.router.add_get(UI + "/stats", stats_page, name="ui_stats")
    app.router.add_get(UI + "/static/{name}", static_file, name="ui_static")


def _page(request: web.Request, template: str, context: dict[str, Any]) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, context)
    response.headers.update(strict_page_headers())
    response.headers["Cache-Control"] = "no-store"
    return response


async def to_index(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(UI + "/")


async def relationships_page(request: web.Request) -> web.Response:
    return _page(
        request,
        "relationships.html",
        {"page": "relationships", "title": "Relationships", "phases": PHASES},
    )


async def relationship_page(request: web.Request) -> web.Response:
    try:
        relationship_id = uuid.UUID(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    return _page(
        request,
        "relationship.html",
        {
            "page": "relationship",
            "title": "Relationship",
            "relationship_id": str(relationship_id),
            "diagram": lifecycle_svg(),
        },
    )


async def mentee_page(request: web.Request) -> web.Response:
    mentee_id = request.match_info["mentee_id"]
    if not mentee_id.strip() or len(mentee_id) > 200 or "\x00" in mentee_id:
        raise web.HTTPNotFound()
    return _page(
        request,
        "mentee.html",
        {"page": "mentee", "title": "Mentoring network", "mentee_id": mentee_id},
    )


async def stats_page(request: web.Request) -> web.Response:
    return _page(request, "stats.html", {"page": "stats", "title": "Program health"})


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(
        STATIC_DIR / name,
        headers={
            "Content-Type": STATIC_FILES[name],
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )
