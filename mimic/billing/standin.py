"""Dev only: a local inkpass stand-in, so the README's Stripe example ends `delivered`.

`mimic run` starts it on the default INKPASS_INTERNAL_URL's port when that variable is unset.
It answers 200 to every billing call and logs the path, Idempotency-Key and event type. It
also takes any POST under ``/hooks/``, as a second service to try a route against (the
README's example), and logs what arrived.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Litestar, Request, post

logger = logging.getLogger("mimic.inkpass-standin")


@post("/internal/billing/{kind:str}", status_code=200)
async def billing_call(kind: str, request: Request[Any, Any, Any]) -> dict[str, bool]:
    try:
        event = msgspec.json.decode(await request.body())
    except msgspec.DecodeError:
        event = {}
    event_type = event.get("event_type") if isinstance(event, dict) else None
    logger.info(
        "inkpass stand-in: POST /internal/billing/%s Idempotency-Key=%s event_type=%s",
        kind,
        request.headers.get("idempotency-key"),
        event_type,
    )
    return {"ok": True}


@post("/hooks/{rest:path}", status_code=200)
async def any_hook(rest: str, request: Request[Any, Any, Any]) -> dict[str, bool]:
    headers = request.headers
    logger.info(
        "stand-in service: POST /hooks%s webhook-id=%s signed=%s event_type=%s (%d bytes)",
        rest,
        headers.get("webhook-id") or headers.get("idempotency-key"),
        "yes" if headers.get("webhook-signature") else "no",
        headers.get("x-mimic-event-type"),
        len(await request.body()),
    )
    return {"ok": True}


def standin_app() -> Litestar:
    return Litestar(
        route_handlers=[billing_call, any_hook], openapi_config=None, logging_config=None
    )
