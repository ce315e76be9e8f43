"""A webhook receiver for Mentorflow: verify, parse, acknowledge.

Run it (needs ``aiohttp``, ``standardwebhooks`` and ``cloudevents``)::

    MENTORFLOW_WEBHOOK_SECRET=whsec_... python docs/examples/receiver.py  # port 8000

then subscribe ``http://<this host>:8000/hook`` with ``POST /v1/webhooks`` and
try it with ``POST /v1/webhooks/{id}/test``.

What it does with each POST:

1. verifies the Standard Webhooks signature over the *raw* body
   (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``; the
   timestamp must be within 5 minutes) and answers 401 if it does not hold;
2. parses the body as a structured-mode CloudEvent 1.0 with the CloudEvents
   SDK (answers 400 if it is not one);
3. skips a ``webhook-id`` it has already handled (deliveries are at least
   once: a retry carries the same ``webhook-id``), else handles the event;
4. answers 204 quickly. Any 2xx is a delivery; anything else, or no answer
   within the service's timeout, is retried.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aiohttp import web
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from standardwebhooks import Webhook, WebhookVerificationError

Handler = Callable[[dict[str, Any]], None]

SEEN_KEY = web.AppKey("seen", set[str])
EVENTS_KEY = web.AppKey("events", list[dict[str, Any]])


def make_app(secret: str, on_event: Handler | None = None) -> web.Application:
    """An aiohttp application that accepts Mentorflow's webhooks on POST /hook.

    ``secret`` is the ``whsec_...`` value ``POST /v1/webhooks`` returned.
    Each verified event is appended to ``app[EVENTS_KEY]`` (as a dict of its
    attributes and ``data``) and given to ``on_event``."""
    verifier = Webhook(secret)
    app = web.Application()
    app[SEEN_KEY] = set()
    app[EVENTS_KEY] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()  # the raw bytes: the signature covers them
        headers = dict(request.headers)
        try:
            verifier.verify(body, headers)
        except WebhookVerificationError:
            return web.Response(status=401, text="bad signature")
        try:
            event = from_http_event(HTTPMessage(headers=headers, body=body))
        except Exception:
            return web.Response(status=400, text="not a CloudEvent")
        message_id = request.headers["webhook-id"]
        if message_id in app[SEEN_KEY]:
            return web.Response(status=204)  # a retry of what we already have
        app[SEEN_KEY].add(message_id)
        received = {**event.get_attributes(), "data": event.get_data()}
        app[EVENTS_KEY].append(received)
        if on_event is not None:
            on_event(received)
        return web.Response(status=204)

    app.router.add_post("/hook", hook)
    return app


def print_event(event: dict[str, Any]) -> None:
    print(event["type"], event["id"], event["data"], flush=True)


if __name__ == "__main__":
    web.run_app(
        make_app(os.environ["MENTORFLOW_WEBHOOK_SECRET"], print_event),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
    )
