"""One delivery attempt of a stored event, with outcome tracking and event roll-up.

A delivery goes to its destination (an HTTP POST of the body its route chose) or to a local
handler inside Mimic (``Outcome`` from any coroutine: email tracking); the bookkeeping is the
same.

At-least-once: an attempt is counted before the call, every call carries
``Idempotency-Key: <delivery id>`` (and, signed, ``webhook-id: <delivery id>``), and a
delivery already marked ``success`` is never called again, whatever retried the job.

The claims and the outcomes of the deliveries a worker runs at once are written together, one
statement each per batch (``core.batching``), as the email worker does for its sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from standardwebhooks.webhooks import Webhook

from mimic.core import http, metrics, ratelimit
from mimic.core.batching import group_commit
from mimic.core.circuits import Policy as CircuitPolicy
from mimic.core.db import Database
from mimic.core.deps import Deps
from mimic.core.errors import ExpectedJobError
from mimic.core.jobs import (
    QUEUE_WEBHOOKS,
    Backoff,
    JobToDefer,
    RetryableError,
    current_job_id,
    defer_jobs,
)
from mimic.events import repository
from mimic.events.gateway import Destination, Destinations
from mimic.events.routes import SEED_TASKS
from mimic.events.schemas import (
    BodyKind,
    DeliveryContext,
    DeliveryStatus,
    Outcome,
    Policy,
    TargetRequest,
)

logger = logging.getLogger(__name__)

RESULT_BODY_LIMIT = 2000
#: Group commits of the delivery path (they label mimic_group_commit_size).
CLAIMS, FINISHED = "delivery_claims", "delivery_finished"


class DeliveryFailed(ExpectedJobError):
    """A delivery failed for good; the job fails and is not retried automatically."""


Perform = Callable[[DeliveryContext, Deps], Awaitable[Outcome]]
#: A body kind's bytes for one delivery.
BodyBuilder = Callable[[DeliveryContext], bytes]


class Envelope(msgspec.Struct, kw_only=True):
    """The ``envelope`` body: Mimic's event id, the provider's, its type, when Mimic received
    it, the delivery's id (also the Idempotency-Key) and the parsed payload."""

    id: str
    delivery_id: str
    provider: str
    type: str
    event_id: str
    received_at: datetime.datetime | None
    payload: dict[str, Any]


def envelope_body(context: DeliveryContext) -> bytes:
    return msgspec.json.encode(
        Envelope(
            id=str(context.event_uuid),
            delivery_id=str(context.delivery_id),
            provider=context.provider,
            type=context.event_type,
            event_id=context.event_id,
            received_at=context.received_at,
            payload=context.payload,
        )
    )


def event_body(context: DeliveryContext) -> bytes:
    """The provider's event exactly as received."""
    if context.raw_body is not None:
        return context.raw_body
    return msgspec.json.encode(context.payload)  # a dry run of a payload never stored


#: Body kind -> builder; the billing domain adds "inkpass" (its contract) when imported.
BODIES: dict[str, BodyBuilder] = {"event": event_body, "envelope": envelope_body}


def sent_as(context: DeliveryContext) -> tuple[BodyKind, str]:
    """The body and path a delivery sends. Deliveries queued before routes were data have
    neither: theirs are the seed's, by task name."""
    if context.body is not None:
        return context.body, context.path or ""
    for path, task in SEED_TASKS.items():
        if task == context.task_name:
            return "inkpass", path
    return "envelope", context.path or ""


@functools.lru_cache(maxsize=256)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


def build_request(
    context: DeliveryContext, destination: Destination, now: datetime.datetime
) -> TargetRequest:
    """What one attempt sends: the route's body at the destination's URL plus the route's
    path, with Mimic's headers, the destination's own, its API key and its signatures."""
    kind, path = sent_as(context)
    body = BODIES[kind](context)
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": str(context.delivery_id),
        "User-Agent": "mimic",
    }
    if kind != "inkpass":  # the inkpass contract's headers stay as they always were
        headers["X-Mimic-Event-Id"] = str(context.event_uuid)
        headers["X-Mimic-Provider"] = context.provider
        headers["X-Mimic-Event-Type"] = context.event_type
    headers.update(destination.headers)
    if destination.api_key_header and destination.api_key is not None:
        headers[destination.api_key_header] = destination.api_key
    secrets = [s for s, until in destination.signing_secrets if until is None or until > now]
    if secrets:
        msg_id = str(context.delivery_id)
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(int(now.timestamp()))
        headers["webhook-signature"] = " ".join(
            _signer(secret).sign(msg_id, now, body) for secret in secrets
        )
    return TargetRequest(
        url=destination.url + path,
        body=body,
        headers=headers,
        timeout=destination.policy.timeout_seconds,
    )


def classify(response: http.Reply) -> Outcome:
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


async def post(deps: Deps, target: TargetRequest) -> Outcome:
    try:
        response = await http.post(
            deps.session,
            target.url,
            body=target.body,
            headers=target.headers,
            timeout=target.timeout,
        )
    except http.TransportFailure as exc:
        return Outcome(kind="retry", error=exc.reason)
    return classify(response)


# --- the group commits: claims and outcomes ---------------------------------------------------


async def claim(db: Database, delivery_id: uuid.UUID, job_id: int | None) -> DeliveryContext | None:
    """Count an attempt before the call, if job ``job_id`` owns the delivery (None: outside
    a job, any); None when the delivery is final, unknown or another job's."""
    writer = group_commit(db, CLAIMS, functools.partial(_claim_many, db))
    found: DeliveryContext | None = await writer.submit((delivery_id, job_id))
    return found


async def _claim_many(
    db: Database, asked: Sequence[tuple[uuid.UUID, int | None]]
) -> list[DeliveryContext | Exception | None]:
    async with db.pinned(CLAIMS) as conn:
        claimed = await repository.claim_deliveries(conn, asked)
    # Should one id be asked twice (a job run twice at once), only the first gets it.
    return [claimed.pop(i, None) for i, _ in asked]


async def finish(db: Database, finished: repository.Finished) -> bool:
    """Record an outcome (rolling the event up); False if the delivery had already succeeded."""
    writer = group_commit(db, FINISHED, functools.partial(_finish_many, db))
    done: bool = await writer.submit(finished)
    return done


async def _finish_many(db: Database, batch: Sequence[repository.Finished]) -> list[bool]:
    # One outcome per delivery and statement: a repeated one is recorded by its own batch.
    first: dict[uuid.UUID, repository.Finished] = {}
    for item in batch:
        first.setdefault(item.delivery_id, item)
    async with db.pinned(FINISHED) as conn:
        done = await repository.finish_deliveries(conn, list(first.values()))
    answers: list[bool] = []
    for item in batch:
        if first.get(item.delivery_id) is item:
            answers.append(item.delivery_id in done)
        else:
            answers.append(await finish(db, item))  # pragma: no cover - a job run twice
    return answers


# --- one attempt ------------------------------------------------------------------------------


def destinations(deps: Deps) -> Destinations:
    """The process's copy of the destinations (one per pool)."""
    found = deps.db.caches.get("destinations")
    if found is None:
        found = deps.db.caches["destinations"] = Destinations(deps.settings, deps.keyring)
    cache: Destinations = found
    return cache


def _circuit(policy: Policy) -> CircuitPolicy | None:
    if not policy.circuit_failures:
        return None
    return CircuitPolicy(
        policy.circuit_failures, policy.circuit_window_seconds, policy.circuit_cooldown_seconds
    )


async def _not_now(deps: Deps, context: DeliveryContext, destination: Destination) -> float:
    """Seconds until the destination may be called (its rate, its circuit); 0: now."""
    policy = destination.policy
    key = f"destination:{destination.name}"
    if _circuit(policy) is not None:
        until = await deps.circuits.open_until(key)
        if until is not None:
            return max((until - datetime.datetime.now(datetime.UTC)).total_seconds(), 0.1)
    return await ratelimit.wait_turn(deps.db, key, policy.rate_per_second)


class Later(Exception):
    """The attempt was not made (the destination's rate or circuit): try again in ``delay``."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.reason, self.delay = reason, delay


class Parked(Exception):
    """The destination is paused or disabled: the delivery waits, without a job."""


class Done(msgspec.Struct, frozen=True):
    """An attempt made and recorded: the delivery's new status, and when to retry it."""

    status: DeliveryStatus
    error: str | None
    retry_after: float


def in_flight(deps: Deps) -> asyncio.Semaphore:
    """Attempts of this worker under way at once, whatever job carries them: at most
    WORKER_CONCURRENCY_WEBHOOKS (a job carrying many deliveries gets no more than its share)."""
    found = deps.db.caches.get("delivery_slots")
    if found is None:
        found = deps.db.caches["delivery_slots"] = asyncio.Semaphore(
            deps.settings.worker.concurrency_webhooks
        )
    slots: asyncio.Semaphore = found
    return slots


async def attempt(deps: Deps, context: DeliveryContext, perform: Perform | None) -> Done:
    """One claimed attempt: to the delivery's destination, or to ``perform`` (a local
    handler). Raises Parked or Later when no attempt was made (neither counts)."""
    did, target = context.delivery_id, context.target_service
    destination: Destination | None = None
    policy = Policy(
        max_attempts=deps.settings.delivery.max_attempts,
        backoff_base_seconds=deps.settings.delivery.backoff_base_seconds,
        backoff_max_seconds=deps.settings.delivery.backoff_max_seconds,
    )
    try:
        if perform is None:
            destination = await destinations(deps).get(deps.db, target, context.gateway_version)
            if destination is None:
                outcome = Outcome(kind="permanent", error="destination_deleted")
            elif destination.state != "active":
                await repository.park(deps.db, did)
                metrics.deliveries_finished.labels(target, "paused").inc()
                logger.info(
                    "delivery %s waits: destination %s is %s", did, target, destination.state
                )
                raise Parked()
            else:
                policy = destination.policy
                wait = await _not_now(deps, context, destination)
                if wait > 0:
                    reason = (
                        f"{target} is rate limited or its circuit is open; next try in {wait:.1f}s"
                    )
                    await repository.release_attempt(deps.db, did, reason)
                    raise Later(reason, wait)
                request = build_request(context, destination, datetime.datetime.now(datetime.UTC))
                async with in_flight(deps):
                    outcome = await post(deps, request)
        else:
            async with in_flight(deps):
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
    exhausted = context.attempt >= policy.max_attempts
    status: DeliveryStatus
    if outcome.kind == "success":
        status = "success"
    elif outcome.kind == "retry" and not exhausted:
        status = "dispatched"
    else:
        status = "failed"

    if destination is not None and _circuit(destination.policy) is not None:
        await _count_for_circuit(deps, destination, outcome)

    if not await finish(deps.db, repository.Finished(did, status, outcome.result, outcome.error)):
        logger.info("delivery %s already succeeded; ignoring a later attempt", did)
        return Done(status="success", error=None, retry_after=0)

    metrics.deliveries_finished.labels(target, status).inc()
    backoff = Backoff(base=policy.backoff_base_seconds, cap=policy.backoff_max_seconds)
    retry_after = backoff.delay(context.attempt - 1, outcome.retry_after)
    if status == "success":
        logger.info("delivered %s to %s", context.event_id, target)
    elif status == "dispatched":
        logger.warning(
            "delivery %s to %s attempt %d failed, will retry in %.1fs: %s",
            did,
            target,
            context.attempt,
            retry_after,
            outcome.error,
        )
    else:
        logger.error(
            "delivery %s to %s failed after %d attempt(s): %s",
            did,
            target,
            context.attempt,
            outcome.error,
        )
    return Done(status=status, error=outcome.error, retry_after=retry_after)


async def run_delivery(deps: Deps, delivery_id: str, perform: Perform | None = None) -> None:
    """A job carrying one delivery: one attempt; a retry is this job's (procrastinate's)."""
    did = uuid.UUID(delivery_id)
    context = await claim(deps.db, did, current_job_id())
    if context is None:
        current = await repository.delivery_status(deps.db, did)
        if current is None:
            raise DeliveryFailed(f"delivery {delivery_id} does not exist")
        logger.info("delivery %s already %s, or another job's; nothing to do", did, current)
        return
    try:
        done = await attempt(deps, context, perform)
    except Parked:
        return
    except Later as later:
        raise RetryableError(later.reason, retry_after=later.delay) from None
    if done.status == "dispatched":
        raise RetryableError(done.error or "retryable", retry_after=done.retry_after)
    if done.status == "failed":
        raise DeliveryFailed(done.error or "failed")


async def run_deliveries(
    deps: Deps,
    delivery_id: str | None = None,
    delivery_ids: list[str] | None = None,
    perform: Perform | None = None,
) -> None:
    """A delivery job's body: one delivery, or a group (deliveries to one destination that
    arrived together). A group's deliveries are claimed and attempted together; one to retry
    moves to a job of its own, due when its retry is; the job fails (naming them) if any
    failed for good, after all were tried."""
    if delivery_ids is None:
        if delivery_id is None:
            raise DeliveryFailed("the job names no delivery")
        await run_delivery(deps, delivery_id, perform)
        return
    ids = [uuid.UUID(i) for i in delivery_ids]
    job = current_job_id()
    claimed = await repository.claim_deliveries(deps.db, [(i, job) for i in ids])
    # In the job's order (oldest first), which is the order their turns are taken in.
    contexts = [c for i in ids if isinstance(c := claimed.get(i), DeliveryContext)]

    async def one(context: DeliveryContext) -> DeliveryStatus | None:
        try:
            done = await attempt(deps, context, perform)
        except Parked:
            return None
        except Later as later:
            await _hand_over(deps, context, later.delay)
            return None
        if done.status == "dispatched":
            await _hand_over(deps, context, done.retry_after)
        return done.status if done.status == "failed" else None

    outcomes = await asyncio.gather(*(one(c) for c in contexts), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            # The database went away, or a shutdown: the job runs again, and claims what
            # it still owns and has not finished.
            raise outcome
    failed = [str(c.delivery_id) for c, o in zip(contexts, outcomes, strict=True) if o]
    unreadable = [i for i, c in claimed.items() if isinstance(c, Exception)]
    for did in unreadable:
        await finish(deps.db, repository.Finished(did, "failed", None, "unreadable delivery"))
    if failed or unreadable:
        names = ", ".join([*failed, *map(str, unreadable)])
        raise DeliveryFailed(f"{len(failed) + len(unreadable)} of {len(ids)} failed: {names}")


async def _hand_over(deps: Deps, context: DeliveryContext, delay: float) -> None:
    """A group's delivery to try again later: its own job, due in ``delay`` seconds."""
    async with deps.db.transaction() as conn:
        [job_id] = await defer_jobs(
            conn,
            [
                JobToDefer(
                    task_name=context.task_name,
                    queue=QUEUE_WEBHOOKS,
                    args={"delivery_id": str(context.delivery_id)},
                    scheduled_at=datetime.datetime.now(datetime.UTC)
                    + datetime.timedelta(seconds=delay),
                )
            ],
        )
        await repository.set_job(conn, context.delivery_id, job_id)


async def _count_for_circuit(deps: Deps, destination: Destination, outcome: Outcome) -> None:
    key = f"destination:{destination.name}"
    if outcome.kind == "success":
        await deps.circuits.succeeded(key)
    elif outcome.kind == "retry":  # unavailable or overloaded: what a breaker is for
        await deps.circuits.failed(key, outcome.error or "failed", _circuit(destination.policy))
