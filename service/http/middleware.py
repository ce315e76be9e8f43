"""Middlewares, outermost first: request context (id, log, metrics), problem
rendering, header encoding, authentication and roles, declared query parameters."""

from __future__ import annotations

import itertools
import logging
import re
import time
import uuid
from uuid import UUID

from aiohttp import web

from domain import DomainError
from service.access.tokens import Principal
from service.http.context import PRINCIPAL, REQUEST_ID, services
from service.http.problems import Problem, problem_from_application, problem_from_domain
from service.http.routing import RELATIONSHIP_PATH, Handler, Route, route_of
from service.platform import logs
from service.relationships.application import ApplicationError
from service.store.errors import StoreUnavailable

log = logging.getLogger("mentorflow.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_request_ids = map(f"{uuid.uuid4().hex[:16]}{{:016x}}".format, itertools.count(1))
"""Request ids nobody supplied: a random prefix per process and a counter,
32 hex digits like a UUID's, unique without a system call per request."""
_HTTP_PROBLEMS = {
    404: ("not-found", "no such resource"),
    405: ("method-not-allowed", "this method is not allowed here"),
    413: ("payload-too-large", "request bodies are limited to 65536 bytes"),
}


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request id on every response and log line, an access log entry that
    names the route (never the body or the token), and the request metrics."""
    supplied = request.headers.get("X-Request-Id", "")
    request_id = supplied if _REQUEST_ID.match(supplied) else next(_request_ids)
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    response = await handler(request)
    elapsed = time.perf_counter() - started
    response.headers["X-Request-Id"] = request_id
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else "unmatched"
    services(request).metrics.request_done(request.method, route_name, response.status, elapsed)
    who = request.get(PRINCIPAL)
    logs.log_fields(
        log,
        "request",
        {
            "request_id": request_id,
            "method": request.method,
            "route": route_name,
            "status": response.status,
            "duration_ms": round(elapsed * 1000, 2),
            "principal": getattr(who, "name", None),
        },
    )
    return response


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as RFC 9457 problem+json; nothing a client sends gives a 500."""
    request_id = request.get(REQUEST_ID)
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response(request_id)
    except DomainError as exc:
        return problem_from_domain(exc).response(request_id)
    except ApplicationError as exc:
        return problem_from_application(exc).response(request_id)
    except (TimeoutError, StoreUnavailable, ConnectionError) as exc:
        log.warning("database unavailable", extra={"request_id": request_id, "error": str(exc)})
        return Problem(
            "unavailable",
            "the database cannot be reached; retry later",
            headers={"Retry-After": "2"},
        ).response(request_id)
    except web.HTTPException as exc:
        if exc.status in _HTTP_PROBLEMS:
            name, detail = _HTTP_PROBLEMS[exc.status]
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return Problem(name, detail, headers=headers).response(request_id)
        raise
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id})
        return Problem("internal-error", "an unexpected error occurred").response(request_id)


@web.middleware
async def utf8_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Header values that are not UTF-8 are refused before anything reads
    them: aiohttp hands them on with lone surrogates, which fail wherever
    they are encoded again (a token's hash, a log line, the database)."""
    if not _utf8("".join(itertools.chain.from_iterable(request.headers.items()))):
        raise Problem("malformed-request", "header values must be UTF-8 text")
    return await handler(request)


@web.middleware
async def declared_query(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Query parameters the route does not declare, or given twice, are
    refused: a typo must not silently widen a list."""
    route = route_of(request)
    if route is not None:
        declared = route.query_names
        for name in request.query:
            if name not in declared:
                raise _unknown_parameter(name, declared)
            if len(request.query.getall(name)) > 1:
                raise Problem.invalid(f"query.{name}", "is given more than once")
    return await handler(request)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unknown_parameter(name: str, declared: frozenset[str]) -> Problem:
    known = ", ".join(sorted(declared)) or "none"
    shown = name if _utf8(name) and len(name) <= 64 else "(unprintable)"
    return Problem.invalid(
        f"query.{shown}",
        f"is not a parameter of this route (known: {known})",
    )


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer tokens and roles, enforced on every route that declares roles."""
    route = route_of(request)
    if route is None or route.roles is None:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("send Authorization: Bearer <token>")
    who = await services(request).tokens.authenticate(token.strip())
    if who is None:
        raise _unauthorized("unknown or revoked token")
    request[PRINCIPAL] = who
    if who.role not in route.roles:
        raise Problem(
            "forbidden",
            f"role {who.role!r} may not {route.summary[0].lower() + route.summary[1:]}",
            required_roles=sorted(route.roles),
        )
    if who.limited:
        await _check_programs(request, route, who)
    return await handler(request)


async def _check_programs(request: web.Request, route: Route, who: Principal) -> None:
    """A token limited to programs: another program's relationship does not
    exist for it (404), on every route that names one; a route that neither
    names one nor filters by program itself refuses the token."""
    if route.path == RELATIONSHIP_PATH or route.path.startswith(RELATIONSHIP_PATH + "/"):
        try:
            relationship_id = UUID(request.match_info["id"])
        except ValueError:
            return  # the handler answers for a malformed id
        exists, program = await services(request).repository.program_of(relationship_id)
        if exists and not who.sees(program):
            raise Problem("not-found", f"no relationship {relationship_id}")
        return
    if not route.program_scoped:
        raise Problem(
            "forbidden",
            f"a token limited to programs may not {route.summary[0].lower() + route.summary[1:]}",
        )


def _unauthorized(detail: str) -> Problem:
    return Problem(
        "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="mentorflow"'}
    )
