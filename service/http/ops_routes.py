"""Operations and discovery: health, readiness, metrics, the API description,
the lifecycle description and diagram, and token administration."""

from __future__ import annotations

import html
from typing import cast

from aiohttp import web

import workflows
from service.http.context import services
from service.http.problems import Problem
from service.http.requests import json_object, query_choice
from service.http.routing import ADMIN, READ, Param, Route
from service.http.tokens import ROLES, Role

OPENAPI = web.AppKey("openapi", dict)


async def healthz(request: web.Request) -> web.Response:
    """The process is up (says nothing about the database)."""
    return web.json_response({"status": "ok"})


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
        return web.json_response(
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
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = services(request).metrics.render()
    return web.Response(
        body=body,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


async def docs(request: web.Request) -> web.Response:
    """A self-contained page (no scripts from elsewhere) listing every operation."""
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
<p>The full description: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
<table><tr><th>method</th><th>path</th><th>what</th><th>roles</th><th>statuses</th></tr>
{"".join(rows)}</table></body></html>"""
    return web.Response(text=page, content_type="text/html")


async def workflow(request: web.Request) -> web.Response:
    return web.json_response(workflows.describe_workflow())


async def workflow_diagram(request: web.Request) -> web.Response:
    form = query_choice(request, "format", ("mermaid", "svg"), "mermaid")
    try:
        text = workflows.diagram(form)
    except workflows.DiagramUnavailable as exc:
        raise Problem("diagram-unavailable", str(exc)) from exc
    if form == "svg":
        return web.Response(text=text, content_type="image/svg+xml")
    return web.Response(text=text, content_type="text/plain")


async def create_token(request: web.Request) -> web.Response:
    body, _ = await json_object(request)
    role, name = body.get("role"), body.get("name")
    errors = []
    if role not in ROLES:
        errors.append({"path": "role", "message": f"must be one of {', '.join(ROLES)}"})
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 100):
        errors.append({"path": "name", "message": "must be a string of 1 to 100 characters"})
    if errors:
        raise Problem("validation-error", "the token request is invalid", errors=errors)
    try:
        token, who = await services(request).tokens.create(cast(Role, role), name)
    except ValueError as exc:
        raise Problem.invalid("name", str(exc), str(exc)) from exc
    return web.json_response({"token": token, "name": who.name, "role": who.role}, status=201)


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
        ok_schema="Status",
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
        "Read the API documentation",
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
    ),
    Route(
        "GET",
        "/v1/workflow/diagram",
        workflow_diagram,
        READ,
        "Draw the lifecycle",
        "workflow",
        ok_content="text/plain",
        errors=("validation-error", "diagram-unavailable"),
        params=(FORMAT,),
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
        body="TokenCreate",
        errors=(
            "malformed-request",
            "payload-too-large",
            "unsupported-media-type",
            "validation-error",
        ),
    ),
]
