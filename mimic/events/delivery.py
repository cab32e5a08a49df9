"""One delivery attempt of a stored event, with outcome tracking and event roll-up.

A delivery is performed by an HTTP call to an internal service (``http_delivery``) or by a
local handler inside Mimic (``Outcome`` from any coroutine); the bookkeeping is the same.

At-least-once: an attempt is counted before the call, every call carries
``Idempotency-Key: <delivery id>``, and a delivery already marked ``success`` is never
called again, whatever retried the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

import httpx

from mimic.core import http, metrics
from mimic.core.deps import Deps
from mimic.core.errors import ExpectedJobError
from mimic.core.jobs import Backoff, RetryableError
from mimic.events import repository
from mimic.events.schemas import DeliveryContext, DeliveryStatus, Outcome, TargetRequest

logger = logging.getLogger(__name__)

RESULT_BODY_LIMIT = 2000


class DeliveryFailed(ExpectedJobError):
    """A delivery failed for good; the job fails and is not retried automatically."""


BuildRequest = Callable[[DeliveryContext, Deps], TargetRequest]
Perform = Callable[[DeliveryContext, Deps], Awaitable[Outcome]]


def classify(response: httpx.Response) -> Outcome:
    result = {
        "status_code": response.status_code,
        "body": response.text[:RESULT_BODY_LIMIT],
    }
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(kind="success", result=result)
    error = f"HTTP {code}: {response.text[:200]}"
    if http.is_retryable_status(code):
        return Outcome(
            kind="retry", error=error, result=result, retry_after=http.retry_after(response)
        )
    return Outcome(kind="permanent", error=error, result=result)


def http_delivery(build: BuildRequest) -> Perform:
    """A perform function that POSTs what ``build`` makes and classifies the answer."""

    async def perform(context: DeliveryContext, deps: Deps) -> Outcome:
        target = build(context, deps)
        try:
            response = await http.request(
                deps.http,
                "POST",
                target.url,
                content=target.body,
                headers=target.headers,
                timeout=target.timeout,
            )
        except http.TransportFailure as exc:
            return Outcome(kind="retry", error=exc.reason)
        return classify(response)

    return perform


async def run_delivery(deps: Deps, delivery_id: str, perform: Perform) -> None:
    did = uuid.UUID(delivery_id)
    context = await repository.claim_delivery(deps.db, did)
    if context is None:
        current = await repository.delivery_status(deps.db, did)
        if current is None:
            raise DeliveryFailed(f"delivery {delivery_id} does not exist")
        logger.info("delivery %s already %s; nothing to do", delivery_id, current)
        return
    target = context.target_service
    try:
        outcome = await perform(context, deps)
    except asyncio.CancelledError:
        # The worker is shutting down (or an operator aborted the job): the attempt may or
        # may not have reached the target. Say so; the job comes back with the same key.
        note = f"attempt {context.attempt} was cut off (worker shutdown, or an operator's abort)"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.shield(repository.interrupt_delivery(deps.db, did, note)), timeout=2
            )
        raise
    settings = deps.settings.delivery
    exhausted = context.attempt >= settings.max_attempts
    status: DeliveryStatus
    if outcome.kind == "success":
        status = "success"
    elif outcome.kind == "retry" and not exhausted:
        status = "dispatched"
    else:
        status = "failed"

    if not await repository.finish_delivery(deps.db, did, status, outcome.result, outcome.error):
        logger.info("delivery %s already succeeded; ignoring a later attempt", delivery_id)
        return

    metrics.deliveries_finished.labels(target, status).inc()
    if status == "success":
        logger.info("delivered %s to %s", context.event_id, target)
    elif status == "dispatched":
        logger.warning(
            "delivery %s to %s attempt %d failed, will retry: %s",
            delivery_id,
            target,
            context.attempt,
            outcome.error,
        )
        backoff = Backoff(base=settings.backoff_base_seconds, cap=settings.backoff_max_seconds)
        raise RetryableError(
            outcome.error or "retryable",
            retry_after=backoff.delay(context.attempt - 1, outcome.retry_after),
        )
    else:
        logger.error(
            "delivery %s to %s failed after %d attempt(s): %s",
            delivery_id,
            target,
            context.attempt,
            outcome.error,
        )
        raise DeliveryFailed(outcome.error or "failed")
