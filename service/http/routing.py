"""The route table: one declaration per operation serves aiohttp, the role
checks and the OpenAPI document, so the three cannot drift apart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from service.access.tokens import Role

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

READ: frozenset[Role] = frozenset({"writer", "auditor", "admin"})
WRITE: frozenset[Role] = frozenset({"writer", "admin"})
ADMIN: frozenset[Role] = frozenset({"admin"})
RELATIONSHIP_PATH = "/v1/relationships/{id}"
"""Routes at or under this path act on one relationship: a token limited to
programs gets 404 for relationships of other programs."""


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query" | "header"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    roles: frozenset[Role] | None  # None: no token needed
    summary: str
    tag: str
    ok_status: int = 200
    ok_schema: str | None = None  # a component schema name
    ok_content: str = "application/json"
    alt_contents: tuple[str, ...] = ()  # other media types of the success response
    body: str | None = None  # request body component schema name
    errors: tuple[str, ...] = ()  # problem types beyond the common ones
    params: tuple[Param, ...] = ()
    ok_headers: tuple[str, ...] = ()
    program_scoped: bool = False
    """The handler itself shows a token limited to programs only what those
    programs may see (or nothing per relationship). Routes under
    RELATIONSHIP_PATH are checked by the authentication middleware instead;
    any other route refuses such a token (403)."""
    secrets: tuple[str, ...] = ()
    """Members of the response that are credentials (a new token, a webhook
    secret): a response kept for Idempotency-Key holds them only sealed."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def idempotent(self) -> bool:
        """Every authenticated POST honours Idempotency-Key (service.http.idempotency)."""
        return self.method == "POST" and self.roles is not None

    @property
    def query_names(self) -> frozenset[str]:
        """The query parameters this route reads; any other is refused."""
        return frozenset(param.name for param in self.params if param.where == "query")

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": 255},
    "replays the first response for the same key and body (kept 24 hours per token)",
)

ROUTE_SPEC = web.AppKey("route_spec", dict)


def register(app: web.Application, routes: Iterable[Route]) -> None:
    """Add the routes to aiohttp and remember each one's declaration, which
    the authentication middleware reads."""
    specs: dict[web.AbstractRoute, Route] = {}
    for route in routes:
        registered = app.router.add_route(
            route.method, route.path, route.handler, name=route.operation_id
        )
        specs[registered] = route
    app[ROUTE_SPEC] = specs


def url_of(
    request: web.Request, handler: Handler, query: dict[str, str] | None = None, **parts: str
) -> str:
    """The path of another route, by its handler: Location headers follow the
    route table instead of repeating its paths. Filled in from the route's
    template by hand: yarl's URL building costs more than the rest of a
    Location header many times over."""
    resource = request.app.router[handler.__name__]
    path = resource.canonical.format_map({k: quote(v, safe="") for k, v in parts.items()})
    return f"{path}?{urlencode(query)}" if query else path


def route_of(request: web.Request) -> Route | None:
    specs: dict[web.AbstractRoute, Route] = request.app[ROUTE_SPEC]
    return specs.get(request.match_info.route)
