"""aiohttp's runner, with the errors aiohttp answers itself made problem+json.

A request that aiohttp's HTTP parser refuses (an over-long or malformed
header line, a bad method, a broken chunked body) never reaches the
application or its middlewares: aiohttp answers it from
``RequestHandler.handle_error`` with a text/plain body. Clients of this API
read ``application/problem+json`` for every error, so the runner here builds
its server with a request handler that answers those in the same shape.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from service.http.problems import TITLES, Problem

_BY_STATUS = {status: name for name, (status, _title) in TITLES.items()}


class _ProblemRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        plain = super().handle_error(request, status, exc, message)  # logs, checks the writer
        name = _BY_STATUS.get(status, "malformed-request" if status < 500 else "internal-error")
        detail = (
            f"the request could not be read as HTTP: {message}"
            if status < 500 and message
            else "the request could not be handled"
        )
        response = Problem(name, detail).response()
        response.set_status(status)
        response.force_close()
        del plain
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ServiceRunner(web.AppRunner):
    """An ``AppRunner`` whose connections answer parser errors as problem+json."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        kwargs: dict[str, Any] = dict(server._kwargs)
        return _ProblemServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **kwargs,
        )
