"""Sending a stored notification (the worker side): claim it, send it through the first
provider of its order that takes it (``providers.registry``), and record the outcome: sent,
retried (by its own job), or failed for good."""

from __future__ import annotations

import datetime
import logging
import uuid

from mimic.core import metrics, ratelimit
from mimic.core.crypto import DecryptionFailed
from mimic.core.deps import Deps
from mimic.core.errors import ExpectedJobError
from mimic.core.jobs import Backoff, RetryableError, current_job_id
from mimic.core.settings import MIN_RATE, EmailProvider, EmailSettings
from mimic.email import repository, status, suppression
from mimic.email.credentials import load_credential
from mimic.email.providers import (
    Credential,
    OutgoingEmail,
    PermanentSendError,
    RetryableSendError,
    Sent,
)
from mimic.email.providers.registry import REGISTRY

logger = logging.getLogger(__name__)


class EmailFailed(ExpectedJobError):
    """A send failed for good; the job fails and is not retried automatically."""


def _credential_key(
    provider: EmailProvider, credential: Credential | None, tenant: str | None
) -> str:
    """Names a provider credential for its rate bucket and circuit breaker."""
    return f"{provider}:tenant:{tenant}" if credential is not None else f"{provider}:platform"


def _rate(settings: EmailSettings, provider: EmailProvider, credential: Credential | None) -> float:
    """Sends per second for this credential; 0: no limit. Never under the floor, whatever
    was stored before the floor existed."""
    if credential is not None and credential.rate_per_second:
        return max(credential.rate_per_second, MIN_RATE)
    return REGISTRY[provider].platform_rate(settings)


class NotSent(RetryableSendError):
    """Every provider of the order certainly failed (or was skipped): try the order again."""


class Unknown(RetryableSendError):
    """``provider`` may have sent it: only that provider may be asked again."""

    def __init__(self, provider: EmailProvider, cause: RetryableSendError) -> None:
        super().__init__(cause.reason, retry_after=cause.retry_after)
        self.provider = provider


class Refused(PermanentSendError):
    """``provider`` refused the message for good; an inactive recipient is suppressed with
    that provider named as the source."""

    def __init__(self, provider: EmailProvider, cause: PermanentSendError) -> None:
        super().__init__(cause.reason, inactive_recipient=cause.inactive_recipient)
        self.provider = provider


class NotYourTurn(Exception):
    """The send-rate turn taken from bucket ``key`` is ``delay`` seconds away: the send goes
    back to the queue for it instead of holding a worker slot."""

    def __init__(self, key: str, delay: float) -> None:
        super().__init__(f"send-rate turn of {key} in {delay:.1f} s")
        self.key, self.delay = key, delay


async def _take_turn(
    deps: Deps, key: str, rate: float, *, tenant_id: str | None, shared: bool, turn: str | None
) -> None:
    """Wait (a moment at most) for this send's turn of ``key``'s send rate, or raise
    ``NotYourTurn``. A tenant's own credential is its own bucket: turns are booked ahead. The
    platform's credential is shared by every tenant, so nobody books it ahead: each tenant
    (admin sends as one more) books turns in a bucket of its own at the platform's rate, and
    meets the others in the shared bucket only when its own turn is due; one tenant's batch
    of 100 cannot push another's password reset 100 turns back."""
    if not rate:
        return
    own = f"{key}:tenant:{tenant_id or '-'}" if shared else key
    if own != turn:
        delay = await ratelimit.wait_turn(deps.db, own, rate)
        if delay:
            raise NotYourTurn(own, delay)
    if own != key:
        delay = await ratelimit.try_turn(deps.db, key, rate)
        if delay:  # the shared turn is taken: come back with the tenant's own turn kept
            raise NotYourTurn(own, delay)


async def dispatch(
    deps: Deps, claimed: status.Claimed, message: OutgoingEmail, *, turn: str | None = None
) -> tuple[EmailProvider, Sent]:
    """Send through the first provider of the order that takes it.

    The next provider is tried only when the outcome is certain to be "not sent" (no
    connection, a 429 or 5xx without a message id, or the provider's circuit is open). An
    unknown outcome (a timeout, a dropped connection) raises ``Unknown``: the retry asks the
    same provider again (its idempotency key, or Postmark's metadata search, prevents a
    duplicate), never another. Before a later provider is tried the notification is pinned
    to it, so a worker that dies mid-call is resumed with that provider alone.

    ``turn``: the send-rate bucket whose token this send already holds (taken by an earlier
    run that found its turn too far away); that provider is asked without taking another."""
    nid = claimed.id
    order = [claimed.provider] if claimed.provider_pinned else claimed.providers
    failures: list[str] = []
    soonest: float | None = None
    for index, provider in enumerate(order):
        chosen = REGISTRY[provider]
        credential = None
        if claimed.tenant_id is not None and chosen.credential is not None:
            credential = await load_credential(deps.db, deps.keyring, claimed.tenant_id, provider)
            if credential is None and not claimed.platform_allowed:
                raise PermanentSendError(
                    f"tenant {claimed.tenant_id!r} has no {provider} credential any more: a "
                    "send accepted for the tenant's own credential is never sent through the "
                    "platform's account"
                )
        key = _credential_key(provider, credential, claimed.tenant_id)
        until = await deps.circuits.open_until(key)
        if until is not None:
            wait = (until - datetime.datetime.now(datetime.UTC)).total_seconds()
            soonest = wait if soonest is None else min(soonest, wait)
            failures.append(f"{provider}: skipped, circuit open")
            metrics.provider_skipped.labels(provider, "circuit_open").inc()
            await status.note(
                deps.db, nid, "skipped", f"{provider}: circuit open until {until:%H:%M:%S} UTC"
            )
            continue
        if index > 0 and provider != claimed.provider:
            await status.pin(deps.db, nid, provider)
        rate = _rate(deps.settings.email, provider, credential)
        shared = credential is None  # the platform's own credential
        await _take_turn(deps, key, rate, tenant_id=claimed.tenant_id, shared=shared, turn=turn)
        resumed = claimed.attempts > 1 and provider == claimed.provider
        try:
            # With the tenant's key when it has one, else the platform's.
            sent = await chosen.send(
                deps.http, deps.settings.email, credential, message, resumed=resumed
            )
        except PermanentSendError as exc:
            if exc.unwell:  # e.g. a refused key: the next send through it would fail too
                await deps.circuits.failed(key, exc.reason)
            raise Refused(provider, exc) from None
        except RetryableSendError as exc:
            if not exc.certain:
                raise Unknown(provider, exc) from None
            failures.append(f"{provider}: {exc.reason}")
            opened = await deps.circuits.failed(key, exc.reason) if exc.unwell else None
            metrics.provider_skipped.labels(provider, "certain_failure").inc()
            more = "; trying the next provider" if index + 1 < len(order) else ""
            note = f" (circuit open until {opened:%H:%M:%S} UTC)" if opened else ""
            await status.note(
                deps.db, nid, "provider_failed", f"{provider}: {exc.reason}{note}{more}"
            )
            if exc.retry_after is not None:
                soonest = exc.retry_after if soonest is None else min(soonest, exc.retry_after)
            continue
        await deps.circuits.succeeded(key)
        return provider, sent
    raise NotSent("; ".join(failures), retry_after=soonest, certain=True)


async def send_notification(
    deps: Deps, notification_id: str, *, in_group: bool = False, turn: str | None = None
) -> None:
    """One send attempt, by the job that owns the notification. A retry is the job's own
    (RetryableError); in a group (``send_emails``) it moves to a job of its own instead. A
    send-rate turn further away than a moment moves it to a job due at its turn, the attempt
    not counted (``turn`` is then that job's: the token it holds)."""
    nid = uuid.UUID(notification_id)
    claimed = await status.claim(deps.db, nid, current_job_id())
    if claimed is None:
        current = await repository.status_of(deps.db, nid)
        if current is None:
            raise EmailFailed(f"notification {notification_id} does not exist")
        logger.info(
            "notification %s is %s (or another job owns its send); not sending here",
            notification_id,
            current,
        )
        return
    message = OutgoingEmail(
        notification_id=notification_id,
        sender=claimed.sender,
        to=claimed.to,
        cc=claimed.cc,
        bcc=claimed.bcc,
        reply_to=claimed.reply_to,
        subject=claimed.subject,
        html=claimed.html,
        text=claimed.text,
        tags=claimed.tag_dict(),
    )
    provider = claimed.provider
    settings = deps.settings.email
    try:
        provider, sent = await dispatch(deps, claimed, message, turn=turn)
    except NotYourTurn as wait:
        await status.wait_for_turn(
            deps.db, nid, turn=wait.key, delay=wait.delay, tenant_id=claimed.tenant_id
        )
        metrics.emails_finished.labels(provider, "waiting").inc()
        logger.info("notification %s: waits %.1f s for its send-rate turn", nid, wait.delay)
        return
    except (PermanentSendError, DecryptionFailed) as exc:
        reason = exc.reason if isinstance(exc, PermanentSendError) else exc.message
        if isinstance(exc, Refused) and exc.inactive_recipient:
            await suppression.add(
                deps.db,
                claimed.tenant_id,
                [*claimed.to, *claimed.cc, *claimed.bcc],
                reason="inactive_recipient",
                provider=exc.provider,
                notification_id=nid,
                detail=reason,
            )
        await _fail(deps, nid, provider, reason, release=in_group)
        raise EmailFailed(reason) from None
    except Exception as exc:
        # A provider's retryable failure, or anything unexpected (its message may hold a
        # key, so only the type is kept): retried within the attempt budget, never left in
        # `sending`. Where the retry starts: an unknown outcome pins its provider; "certainly
        # not sent" starts the order again; anything unexpected pins the provider last
        # asked (it might have sent).
        if isinstance(exc, Unknown):
            reason, retry_after, start, pinned = exc.reason, exc.retry_after, exc.provider, True
        elif isinstance(exc, RetryableSendError) and claimed.provider_pinned:
            # Pinned by an earlier unknown outcome: that attempt may still have been sent,
            # whatever this one says. It stays with that provider until sent or failed.
            reason, retry_after = exc.reason, exc.retry_after
            start, pinned = claimed.provider, True
        elif isinstance(exc, RetryableSendError):
            reason, retry_after = exc.reason, exc.retry_after
            start, pinned = claimed.providers[0], False
        else:
            reason, retry_after = f"unexpected error: {type(exc).__name__}", None
            start, pinned = None, True
        if claimed.attempts < settings.max_attempts:
            backoff = Backoff(base=settings.backoff_base_seconds, cap=settings.backoff_max_seconds)
            delay = backoff.delay(claimed.attempts - 1, retry_after)
            metrics.emails_finished.labels(provider, "retry").inc()
            logger.warning("notification %s: %s; will retry", notification_id, reason)
            if in_group:
                await status.retry_in_own_job(
                    deps.db,
                    nid,
                    reason=reason,
                    provider=start,
                    pinned=pinned,
                    delay=delay,
                    tenant_id=claimed.tenant_id,
                )
                return
            await status.mark_unsent(
                deps.db, nid, retrying=True, reason=reason, provider=start, pinned=pinned
            )
            raise RetryableError(reason, retry_after=delay) from None
        await _fail(deps, nid, provider, reason, release=in_group)
        raise EmailFailed(reason) from None
    detail = f"{provider} message {sent.message_id}" + (f"; {sent.note}" if sent.note else "")
    await status.mark_sent(deps.db, nid, sent.message_id, detail, provider=provider)
    metrics.emails_finished.labels(provider, "sent").inc()
    logger.info("notification %s sent via %s", notification_id, provider)


async def _fail(
    deps: Deps, notification_id: uuid.UUID, provider: str, reason: str, *, release: bool
) -> None:
    await status.mark_unsent(
        deps.db, notification_id, retrying=False, reason=reason, release=release
    )
    metrics.emails_finished.labels(provider, "failed").inc()
    logger.error("notification %s failed: %s", notification_id, reason)
