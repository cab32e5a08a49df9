"""One delivery attempt of a stored event, with outcome tracking and event roll-up.

A delivery is performed by an HTTP call to an internal service (``http_delivery``) or by a
local handler inside Mimic (``Outcome`` from any coroutine); the bookkeeping is the same.

At-least-once: an attempt is counted before the call, every call carries
``Idempotency-Key: <delivery id>``, and a delivery already marked ``success`` is never
called again, whatever retried the job.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx
import msgspec

from mimic import metrics
from mimic.deps import Deps
from mimic.ingress.store import queries
from mimic.jobs import RetryableError

logger = logging.getLogger(__name__)

RESULT_BODY_LIMIT = 2000


class DeliveryFailed(Exception):
    """A delivery failed for good; the job fails and is not retried automatically."""


class DeliveryContext(msgspec.Struct, kw_only=True, frozen=True):
    delivery_id: uuid.UUID
    attempt: int
    task_name: str
    event_uuid: uuid.UUID
    provider: str
    event_id: str
    event_type: str
    payload: dict[str, Any]


class TargetRequest(msgspec.Struct, kw_only=True, frozen=True):
    url: str
    body: bytes
    headers: dict[str, str]


BuildRequest = Callable[[DeliveryContext, Deps], TargetRequest]


class Outcome(msgspec.Struct, kw_only=True, frozen=True):
    kind: Literal["success", "retry", "permanent"]
    error: str | None = None
    result: dict[str, Any] | None = None
    retry_after: float | None = None


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Parse Retry-After: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now, 0.0)


def classify(response: httpx.Response) -> Outcome:
    result = {
        "status_code": response.status_code,
        "body": response.text[:RESULT_BODY_LIMIT],
    }
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(kind="success", result=result)
    error = f"HTTP {code}: {response.text[:200]}"
    if code in (408, 429) or code >= 500:
        retry_after = retry_after_seconds(response.headers.get("retry-after"), time.time())
        return Outcome(kind="retry", error=error, result=result, retry_after=retry_after)
    return Outcome(kind="permanent", error=error, result=result)


async def _call(deps: Deps, request: TargetRequest) -> Outcome:
    timeout = deps.settings.inkpass_timeout_seconds
    try:
        response = await deps.http.post(
            request.url, content=request.body, headers=request.headers, timeout=timeout
        )
    except httpx.TimeoutException:
        return Outcome(kind="retry", error=f"timed out after {timeout:g}s")
    except httpx.TransportError as exc:
        return Outcome(kind="retry", error=f"connection error: {type(exc).__name__}")
    return classify(response)


Perform = Callable[[DeliveryContext, Deps], Awaitable[Outcome]]


def http_delivery(build: BuildRequest) -> Perform:
    async def perform(context: DeliveryContext, deps: Deps) -> Outcome:
        return await _call(deps, build(context, deps))

    return perform


async def run_delivery(deps: Deps, delivery_id: str, perform: Perform) -> None:
    row = await deps.db.fetchrow(queries["start_delivery"], uuid.UUID(delivery_id))
    if row is None:
        status = await deps.db.fetchval(queries["get_delivery_status"], uuid.UUID(delivery_id))
        if status is None:
            raise DeliveryFailed(f"delivery {delivery_id} does not exist")
        logger.info("delivery %s already %s; nothing to do", delivery_id, status)
        return
    target = row["target_service"]
    context = DeliveryContext(
        delivery_id=uuid.UUID(delivery_id),
        attempt=row["attempt_count"],
        task_name=row["task_name"],
        event_uuid=row["event_uuid"],
        provider=row["provider"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        payload=json.loads(row["payload"]),
    )
    outcome = await perform(context, deps)
    exhausted = context.attempt >= deps.settings.delivery_max_attempts
    if outcome.kind == "success":
        status = "success"
    elif outcome.kind == "retry" and not exhausted:
        status = "dispatched"
    else:
        status = "failed"

    async with deps.db.transaction() as conn:
        event_uuid = await conn.fetchval(
            queries["finish_delivery"],
            context.delivery_id,
            status,
            json.dumps(outcome.result) if outcome.result is not None else None,
            outcome.error,
        )
        if event_uuid is not None and status != "dispatched":
            await conn.execute(queries["lock_event"], event_uuid)
            await conn.execute(queries["roll_up_event"], event_uuid)
    if event_uuid is None:
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
        raise RetryableError(outcome.error or "retryable", retry_after=outcome.retry_after)
    else:
        logger.error(
            "delivery %s to %s failed after %d attempt(s): %s",
            delivery_id,
            target,
            context.attempt,
            outcome.error,
        )
        raise DeliveryFailed(outcome.error or "failed")
