"""Dev only: a local inkpass stand-in, so the README's Stripe example ends `delivered`.

`mimic run` starts it on the default INKPASS_INTERNAL_URL's port when that variable is unset.
It answers 200 to every billing call and logs the path, Idempotency-Key and event type. It
also takes any POST under ``/hooks/``, as a second service to try a route against (the
README's example), and logs what arrived.

``PUT /standin/status {"status": 503}`` makes it answer that status to every call from then
on (to watch retries, dead letters and a retry that succeeds); ``{"status": 200}`` heals it.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, post, put
from litestar.exceptions import ValidationException
from litestar.params import FromPath, JSONBody

logger = logging.getLogger("mimic.inkpass-standin")


class Answer(msgspec.Struct):
    """What the stand-in answers every call with (PUT /standin/status changes it)."""

    status: int = 200


def _answer(request: Request[Any, Any, Any]) -> Response[dict[str, bool]]:
    status: int = request.app.state.answer.status
    return Response({"ok": status < 300}, status_code=status)


@post("/internal/billing/{kind:str}", status_code=200)
async def billing_call(
    kind: FromPath[str], request: Request[Any, Any, Any]
) -> Response[dict[str, bool]]:
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
    return _answer(request)


@post("/hooks/{rest:path}", status_code=200)
async def any_hook(
    rest: FromPath[str], request: Request[Any, Any, Any]
) -> Response[dict[str, bool]]:
    headers = request.headers
    logger.info(
        "stand-in service: POST /hooks%s webhook-id=%s signed=%s event_type=%s (%d bytes)",
        rest,
        headers.get("webhook-id") or headers.get("idempotency-key"),
        "yes" if headers.get("webhook-signature") else "no",
        headers.get("x-mimic-event-type"),
        len(await request.body()),
    )
    return _answer(request)


@put("/standin/status", status_code=200)
async def set_status(data: JSONBody[Answer], request: Request[Any, Any, Any]) -> Answer:
    if not 200 <= data.status <= 599:
        raise ValidationException("status must be an HTTP status between 200 and 599")
    request.app.state.answer = data
    logger.warning("inkpass stand-in: answering %d to every call from now on", data.status)
    return data


def standin_app() -> Litestar:
    app = Litestar(
        route_handlers=[billing_call, any_hook, set_status],
        openapi_config=None,
        logging_config=None,
    )
    app.state.answer = Answer()
    return app
