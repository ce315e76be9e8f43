"""RFC 9457 problem details: every error the API returns, in one place.

Handlers raise `Problem`; the middleware in `service.http.middleware` turns it
(and the domain's and store's typed errors) into `application/problem+json`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from domain import DomainError, GuardFailed, InvalidTransition, ValidationFailed
from service.http.json_text import dumps
from service.relationships.application import (
    ApplicationError,
    Contended,
    ErasureUnavailable,
    NotPermitted,
    VersionMismatch,
)

PROBLEM_BASE = "https://mentorflow.dev/problems/"
PROBLEM_JSON = "application/problem+json"

TITLES: dict[str, tuple[int, str]] = {
    "malformed-request": (400, "Malformed request"),
    "unauthorized": (401, "Unauthorized"),
    "forbidden": (403, "Forbidden"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "invalid-transition": (409, "Event not accepted in the current phase"),
    "erasure-unavailable": (409, "Erasure not available"),
    "version-conflict": (412, "Version conflict"),
    "payload-too-large": (413, "Payload too large"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "validation-error": (422, "Validation error"),
    "guard-failed": (422, "Guard not met"),
    "idempotency-conflict": (422, "Idempotency key reused"),
    "unavailable": (503, "Service unavailable"),
    "internal-error": (500, "Internal error"),
}
"""Each problem type: its status and title (docs/api.md, "HTTP conventions")."""


class Problem(Exception):
    """An error response; `extra` becomes members of the problem object."""

    def __init__(
        self,
        name: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(detail)
        self.name = name
        self.status, self.title = TITLES[name]
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    @classmethod
    def invalid(cls, path: str, message: str, detail: str | None = None) -> Problem:
        """A 422 validation-error naming one wrong field (`path`), the shape
        every validation error of the API has."""
        return cls(
            "validation-error",
            detail or f"{path}: {message}",
            errors=[{"path": path, "message": message}],
        )

    def body(self) -> dict[str, Any]:
        return {
            "type": PROBLEM_BASE + self.name,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def response(self, request_id: str | None = None) -> web.Response:
        body = self.body()
        if request_id:
            body["request_id"] = request_id
        return web.Response(
            status=self.status,
            text=dumps(body),
            content_type=PROBLEM_JSON,
            headers=self.headers,
        )


_DOMAIN_PROBLEMS: dict[type[DomainError], str] = {
    ValidationFailed: "validation-error",
    InvalidTransition: "invalid-transition",
    GuardFailed: "guard-failed",
}


def problem_from_application(exc: ApplicationError) -> Problem:
    """The application's refusals, each as the problem type the API names."""
    if isinstance(exc, VersionMismatch):
        return Problem("version-conflict", str(exc), current_version=exc.current)
    if isinstance(exc, NotPermitted):
        return Problem("forbidden", str(exc))
    if isinstance(exc, ErasureUnavailable):
        return Problem("erasure-unavailable", str(exc))
    if isinstance(exc, Contended):
        return Problem("unavailable", str(exc), headers={"Retry-After": "1"})
    return Problem("not-found", str(exc))


def problem_from_domain(exc: DomainError) -> Problem:
    """The domain's refusals map one-to-one onto problem types."""
    return Problem(_DOMAIN_PROBLEMS[type(exc)], str(exc), **exc.to_dict())
