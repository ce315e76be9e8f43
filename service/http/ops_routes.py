"""Operations and discovery: health, readiness, metrics, the API description,
the lifecycle description and diagram, and token administration."""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path
from typing import cast

from aiohttp import web

import workflows
from projections.paging import encode_cursor
from service.access.tokens import Role, TokenRefused, check_token_request
from service.http.context import services
from service.http.json_text import json_response
from service.http.problems import Problem
from service.http.requests import json_object, limit, path_uuid, query_choice
from service.http.routing import ADMIN, READ, Handler, Param, Route
from service.http.views import decode_cursor
from service.pages.headers import PAGE_CSP, strict_page_headers

OPENAPI = web.AppKey("openapi", dict)


async def healthz(request: web.Request) -> web.Response:
    """The process is up (says nothing about the database)."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: the database answers and its migrations are applied.

    A projection stuck at an event (whichever process runs it) makes the
    answer ``{"status": "degraded", "failing": [{"projection", "position",
    "error", "since"}]}``, still with status 200: the process serves writes
    and every other read, and a 503 would make load balancers take every
    instance out of service at once for one read model's problem (all of them
    read the same state). Monitoring should alert on ``degraded`` (or on the
    ``mentorflow_projection_stuck_position`` gauge) instead. 503 stays for
    what stops this instance serving: no database, migrations pending.
    """
    store = services(request).store
    if not await store.ping():
        raise Problem("unavailable", "the database cannot be reached", headers={"Retry-After": "2"})
    pending = await store.pending_migrations()
    if pending:
        raise Problem("unavailable", f"migrations not applied yet: {pending}")
    failing = await services(request).runner.failures()
    if failing:
        return json_response(
            {
                "status": "degraded",
                "failing": [
                    {
                        "projection": f.projection,
                        "position": f.position,
                        "error": f.error,
                        "since": f.since.isoformat(),
                    }
                    for f in failing
                ],
            }
        )
    return json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = services(request).metrics.render()
    return web.Response(
        body=body,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


DOCS_STATIC = "/docs/static"
SWAGGER_UI_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")
DOCS_CSP = PAGE_CSP
"""Everything /docs loads comes from this service, and no script runs inline.
(Swagger UI sets some element styles from script, which `style-src 'self'`
blocks only cosmetically.) The web pages under /ui/ send the same policy,
with the same headers (service.pages.headers)."""


def swagger_ui_dir() -> Path:
    """Swagger UI's static files (5.x, which renders OpenAPI 3.1), as shipped by
    the swagger-ui-py package: served offline, never from a CDN."""
    return Path(str(resources.files("swagger_ui") / "static"))


def docs_assets_dir() -> Path:
    """This service's own /docs files (the initializer script), package data."""
    return Path(__file__).parent / "docs_assets"


def add_docs_static(app: web.Application) -> None:
    """`/docs/static/...`: the few Swagger UI files the page loads, and our
    initializer. Served without a token, like /docs itself."""
    ui = swagger_ui_dir()
    for name in SWAGGER_UI_FILES:
        app.router.add_get(f"{DOCS_STATIC}/{name}", _file_handler(ui / name))
    app.router.add_get(f"{DOCS_STATIC}/init.js", _file_handler(docs_assets_dir() / "init.js"))


def _file_handler(path: Path) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            path,
            headers={
                "Cache-Control": "public, max-age=3600",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return serve


async def docs(request: web.Request) -> web.Response:
    """Swagger UI over /openapi.json: read every operation and try it with a
    token (Authorize). Offline: every asset is served by this service."""
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Mentorflow API</title>
<link rel="icon" href="{DOCS_STATIC}/favicon-32x32.png">
<link rel="stylesheet" href="{DOCS_STATIC}/swagger-ui.css"></head>
<body><p><a href="/docs/routes">Route summary</a> ·
<a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1)</p>
<div id="swagger-ui"></div>
<script src="{DOCS_STATIC}/swagger-ui-bundle.js"></script>
<script src="{DOCS_STATIC}/init.js"></script>
</body></html>"""
    return web.Response(
        text=page,
        content_type="text/html",
        headers=strict_page_headers(),
    )


async def docs_routes(request: web.Request) -> web.Response:
    """A self-contained page (no scripts) listing every operation."""
    spec = request.app[OPENAPI]
    rows = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            roles = operation.get("x-roles") or ["no token"]
            statuses = ", ".join(sorted(operation["responses"]))
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code>"
                f"</td><td>{html.escape(operation['summary'])}</td>"
                f"<td>{html.escape(', '.join(roles))}</td><td>{statuses}</td></tr>"
            )
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>Mentorflow API</title><style>body{{font-family:sans-serif;margin:2em}}
td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}}</style></head>
<body><h1>Mentorflow API {html.escape(spec["info"]["version"])}</h1>
<p>{html.escape(spec["info"]["description"])}</p>
<p>The full description: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1);
try it: <a href="/docs">/docs</a>.</p>
<table><tr><th>method</th><th>path</th><th>what</th><th>roles</th><th>statuses</th></tr>
{"".join(rows)}</table></body></html>"""
    return web.Response(
        text=page,
        content_type="text/html",
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )


async def workflow(request: web.Request) -> web.Response:
    return json_response(workflows.describe_workflow())


async def workflow_diagram(request: web.Request) -> web.Response:
    """Mermaid text by default; SVG with `?format=svg`, or when the client's
    `Accept` prefers `image/svg+xml` and names no format."""
    form = query_choice(request, "format", ("mermaid", "svg"), _preferred_format(request))
    text = workflows.diagram(form)  # both are drawn in Python: nothing to install
    if form == "svg":
        return web.Response(text=text, content_type="image/svg+xml")
    return web.Response(text=text, content_type="text/plain")


def _preferred_format(request: web.Request) -> str:
    best, best_q = "mermaid", 0.0
    for part in request.headers.get("Accept", "").split(","):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        form = {"image/svg+xml": "svg", "text/plain": "mermaid"}.get(media.strip().lower())
        if form is not None and q > best_q:
            best, best_q = form, q
    return best


async def create_token(request: web.Request) -> web.Response:
    body, _ = await json_object(request)
    unknown = sorted(set(body) - TOKEN_FIELDS)
    errors = [{"path": key, "message": "unknown member"} for key in unknown]
    role, name, programs = body.get("role"), body.get("name"), body.get("program_ids")
    errors += [
        {"path": path, "message": message}
        for path, message in check_token_request(role, name, programs)
    ]
    if errors:
        raise Problem("validation-error", "the token request is invalid", errors=errors)
    try:
        token, info = await services(request).tokens.create(cast(Role, role), str(name), programs)
    except TokenRefused as exc:
        raise Problem(
            "validation-error",
            "the token request is invalid",
            errors=[{"path": path, "message": message} for path, message in exc.errors],
        ) from exc
    view = info.to_dict()
    del view["last_used_at"], view["revoked_at"]
    return json_response({**view, "token": token}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    page = limit(request)
    after = decode_cursor(request.query.get("cursor"), kind="tokens") or 0
    items, last = await services(request).tokens.list(after=after, limit=page)
    return json_response(
        {
            "items": [item.to_dict() for item in items],
            "next_cursor": None if last is None else encode_cursor(last, kind="tokens"),
        }
    )


async def revoke_token(request: web.Request) -> web.Response:
    token_id = path_uuid(request, "id", "token")
    if not await services(request).tokens.revoke(token_id):
        raise Problem("not-found", f"no token {token_id}")
    return web.Response(status=204)


TOKEN_FIELDS = frozenset({"role", "name", "program_ids"})
FORMAT = Param("format", "query", {"type": "string", "enum": ["mermaid", "svg"]})

ROUTES = [
    Route(
        "GET",
        "/healthz",
        healthz,
        None,
        "Check the process is up",
        "operations",
        ok_schema="Status",
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        None,
        "Check the service is ready",
        "operations",
        ok_schema="Readiness",
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        None,
        "Read Prometheus metrics",
        "operations",
        ok_content="text/plain",
    ),
    Route(
        "GET",
        "/openapi.json",
        openapi,
        None,
        "Read this API's OpenAPI description",
        "operations",
        ok_schema="Any",
    ),
    Route(
        "GET",
        "/docs",
        docs,
        None,
        "Read and try the API (Swagger UI)",
        "operations",
        ok_content="text/html",
        ok_headers=("Content-Security-Policy",),
    ),
    Route(
        "GET",
        "/docs/routes",
        docs_routes,
        None,
        "Read a summary of the routes",
        "operations",
        ok_content="text/html",
    ),
    Route(
        "GET",
        "/v1/workflow",
        workflow,
        READ,
        "Describe the lifecycle",
        "workflow",
        ok_schema="Workflow",
        program_scoped=True,
    ),
    Route(
        "GET",
        "/v1/workflow/diagram",
        workflow_diagram,
        READ,
        "Draw the lifecycle (Mermaid text, or SVG)",
        "workflow",
        ok_content="text/plain",
        alt_contents=("image/svg+xml",),
        errors=("validation-error",),
        params=(FORMAT,),
        program_scoped=True,
    ),
    Route(
        "POST",
        "/v1/tokens",
        create_token,
        ADMIN,
        "Create an API token",
        "administration",
        ok_status=201,
        ok_schema="TokenCreated",
        secrets=("token",),
        body="TokenCreate",
        errors=(
            "malformed-request",
            "payload-too-large",
            "unsupported-media-type",
            "validation-error",
        ),
    ),
    Route(
        "GET",
        "/v1/tokens",
        list_tokens,
        ADMIN,
        "List API tokens",
        "administration",
        ok_schema="TokenPage",
        errors=("validation-error",),
        params=(
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
            Param("cursor", "query", {"type": "string"}, "next_cursor of the previous page"),
        ),
    ),
    Route(
        "DELETE",
        "/v1/tokens/{id}",
        revoke_token,
        ADMIN,
        "Revoke an API token",
        "administration",
        ok_status=204,
        ok_content="text/plain",
        errors=("not-found",),
        params=(
            Param("id", "path", {"type": "string", "format": "uuid"}, "token id", required=True),
        ),
    ),
]
