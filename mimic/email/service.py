"""Sending email: accept a request (API side) and send a stored notification (worker side)."""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Sequence

from mimic.core import metrics, ratelimit
from mimic.core.batching import GroupCommit, group_commit
from mimic.core.crypto import DecryptionFailed
from mimic.core.deps import Deps
from mimic.core.errors import Conflict, ExpectedJobError, MimicError, Unprocessable
from mimic.core.jobs import Backoff, RetryableError, current_job_id
from mimic.core.keys import check_tenant
from mimic.core.outbound import allowlist
from mimic.core.settings import EmailProvider, Secret, Settings
from mimic.email import repository, status, suppression
from mimic.email.addresses import validate_address, validate_addresses
from mimic.email.credentials import Credential, load_credential, tenant_senders
from mimic.email.providers import (
    OutgoingEmail,
    PermanentSendError,
    RetryableSendError,
    Sent,
    SmtpConfig,
)
from mimic.email.providers.postmark import find_postmark_message, send_postmark
from mimic.email.providers.resend import send_resend
from mimic.email.providers.smtp import send_smtp
from mimic.email.rendering import Templates
from mimic.email.schemas import Accepted, EmailRequest, Recipients

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 50


class EmailFailed(ExpectedJobError):
    """A send failed for good; the job fails and is not retried automatically."""


# --- API side -----------------------------------------------------------------------------


def check_recipients(request: EmailRequest) -> Recipients:
    to = [request.to] if isinstance(request.to, str) else request.to
    if not to:
        raise Unprocessable("to: at least one recipient is required", code="invalid_address")
    total = len(to) + len(request.cc) + len(request.bcc)
    if len(to) > MAX_RECIPIENTS or total > MAX_RECIPIENTS:
        raise Unprocessable(
            f"at most {MAX_RECIPIENTS} recipients (to, cc and bcc together)",
            code="too_many_recipients",
        )
    return Recipients(
        to=validate_addresses(to, "to"),
        cc=validate_addresses(request.cc, "cc"),
        bcc=validate_addresses(request.bcc, "bcc"),
        reply_to=validate_address(request.reply_to, "reply_to") if request.reply_to else None,
        sender=validate_address(request.sender, "from") if request.sender else None,
    )


#: Tag names Mimic keeps for itself (the Postmark duplicate check reads mimic_notification_id).
RESERVED_TAG_PREFIX = "mimic_"


def check_tags(tags: dict[str, str]) -> None:
    reserved = sorted(name for name in tags if name.lower().startswith(RESERVED_TAG_PREFIX))
    if reserved:
        raise Unprocessable(
            f"tags: names starting with {RESERVED_TAG_PREFIX!r} are reserved for Mimic: "
            + ", ".join(reserved),
            code="reserved_tag",
        )


def platform_has(settings: Settings, provider: EmailProvider) -> bool:
    email = settings.email
    return {
        "dev": True,
        "smtp": email.smtp_host is not None,
        "resend": email.resend_api_key is not None,
        "postmark": email.postmark_server_token is not None,
    }[provider]


async def choose_providers(
    deps: Deps, request: EmailRequest
) -> tuple[list[EmailProvider], str | None]:
    """The failover order and the tenant's sender. An explicit ``provider`` alone; else a
    tenant's own credentials (by priority, then the newest); else the platform's
    EMAIL_PROVIDERS (or EMAIL_PROVIDER) that are configured."""
    if request.tenant_id is not None:
        found = await tenant_senders(deps.db, request.tenant_id, request.provider)
        if found:
            return [f.provider for f in found], found[0].from_email
    wanted = [request.provider] if request.provider else list(deps.settings.email.provider_order)
    order = [p for p in wanted if platform_has(deps.settings, p)]
    if not order:
        raise Unprocessable(
            f"provider {wanted[0]!r} has no credentials for this tenant or the platform",
            code="provider_not_configured",
        )
    return order, None


async def replay(deps: Deps, request: EmailRequest, key: str) -> Accepted | None:
    """The original answer for a reused Idempotency-Key; 409 if the body differs."""
    earlier = await repository.by_idempotency_key(deps.db, request.tenant_id, key)
    if earlier is None:
        return None
    if earlier.request_hash != request.fingerprint():
        raise Conflict(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    return Accepted(id=earlier.id, status="queued")


async def prepare(
    deps: Deps, templates: Templates, request: EmailRequest, idempotency_key: str | None
) -> Accepted | status.NewNotification:
    """Everything short of storing: the earlier answer for a replayed key, or a validated,
    rendered notification. Raises the 4xx the request deserves."""
    if request.tenant_id is not None:
        check_tenant(request.tenant_id)
    if idempotency_key is not None:
        # Before rendering: a replay answers as the first time did, even if a template
        # or credential has changed since.
        earlier = await replay(deps, request, idempotency_key)
        if earlier is not None:
            return earlier
    recipients = check_recipients(request)
    check_tags(request.tags)
    await suppression.refuse_suppressed(
        deps.db, request.tenant_id, [*recipients.to, *recipients.cc, *recipients.bcc]
    )
    rendered = templates.render(request.template, request.data, request.locale)
    providers, tenant_from = await choose_providers(deps, request)
    return status.NewNotification(
        request=request,
        recipients=recipients,
        rendered=rendered,
        sender=recipients.sender or tenant_from or deps.settings.email.sender,
        provider=providers[0],
        providers=providers,
        idempotency_key=idempotency_key,
    )


async def submit(
    deps: Deps, templates: Templates, request: EmailRequest, idempotency_key: str | None
) -> tuple[Accepted, bool]:
    """Render, store and queue one email. Returns the answer and whether it is a replay.

    Stored through the group commit (``core.batching``): sends that arrive while a commit is
    in flight are stored together and share one ``send_emails`` job."""
    prepared = await prepare(deps, templates, request, idempotency_key)
    if isinstance(prepared, Accepted):
        return prepared, True
    notification_id = await _sends(deps).submit(prepared)
    if notification_id is None:
        # A concurrent request with the same key committed first.
        assert idempotency_key is not None
        earlier = await replay(deps, request, idempotency_key)
        assert earlier is not None
        return earlier, True
    return Accepted(id=notification_id, status="queued"), False


#: The send group commit's name (labels mimic_group_commit_size).
WRITER = "emails"


def _sends(deps: Deps) -> GroupCommit[status.NewNotification, uuid.UUID | None]:
    db = deps.db

    async def store(batch: Sequence[status.NewNotification]) -> list[uuid.UUID | None]:
        return await status.create_many(db, list(batch))

    return group_commit(db, WRITER, store)


class BatchRefused(MimicError):
    """A message of the batch is invalid; nothing was stored."""

    def __init__(self, failures: list[tuple[int, MimicError]]) -> None:
        first = failures[0][1]
        super().__init__(
            "; ".join(f"messages[{i}]: {exc.code}: {exc.message}" for i, exc in failures)
            + " (nothing was stored)",
            code=first.code,
        )
        self.status_code = first.status_code


async def submit_many(
    deps: Deps, templates: Templates, items: list[tuple[EmailRequest, str | None]]
) -> list[tuple[Accepted, bool]]:
    """Validate every message first, then store and queue them all in one transaction (and
    one job). One invalid message refuses the batch (BatchRefused names each, with its
    index)."""
    prepared: list[Accepted | status.NewNotification] = []
    failures: list[tuple[int, MimicError]] = []
    seen: set[tuple[str | None, str]] = set()
    for index, (request, key) in enumerate(items):
        if key is not None and (request.tenant_id, key) in seen:
            failures.append(
                (
                    index,
                    Unprocessable(
                        "idempotency_key repeats an earlier message of this batch",
                        code="duplicate_idempotency_key",
                    ),
                )
            )
            continue
        if key is not None:
            seen.add((request.tenant_id, key))
        try:
            prepared.append(await prepare(deps, templates, request, key))
        except MimicError as exc:
            failures.append((index, exc))
    if failures:
        raise BatchRefused(failures)
    new = [p for p in prepared if isinstance(p, status.NewNotification)]
    created = iter(await status.create_many(deps.db, new))
    answers: list[tuple[Accepted, bool]] = []
    for (request, key), item in zip(items, prepared, strict=True):
        if isinstance(item, Accepted):
            answers.append((item, True))
            continue
        notification_id = next(created)
        if notification_id is None:
            # A concurrent request with the same key committed first.
            assert key is not None
            earlier = await replay(deps, request, key)
            assert earlier is not None
            answers.append((earlier, True))
        else:
            answers.append((Accepted(id=notification_id, status="queued"), False))
    return answers


# --- worker side --------------------------------------------------------------------------


def _api_key(credential: Credential | None, platform: Secret | None, what: str) -> str:
    """The tenant's key when it has one, else the platform's."""
    if credential is not None and credential.api_key:
        return credential.api_key
    if platform is not None:
        return platform.get()
    raise PermanentSendError(f"no {what} for this tenant or the platform")


def _credential_key(
    provider: EmailProvider, credential: Credential | None, tenant: str | None
) -> str:
    """Names a provider credential for its rate bucket and circuit breaker."""
    return f"{provider}:tenant:{tenant}" if credential is not None else f"{provider}:platform"


def _rate(settings: Settings, provider: EmailProvider, credential: Credential | None) -> float:
    if credential is not None and credential.rate_per_second:
        return credential.rate_per_second
    email = settings.email
    return {
        "dev": 0.0,
        "smtp": email.smtp_rate_per_second,
        "resend": email.resend_rate_per_second,
        "postmark": email.postmark_rate_per_second,
    }[provider]


class NotSent(RetryableSendError):
    """Every provider of the order certainly failed (or was skipped): try the order again."""


class Unknown(RetryableSendError):
    """``provider`` may have sent it: only that provider may be asked again."""

    def __init__(self, provider: EmailProvider, cause: RetryableSendError) -> None:
        super().__init__(cause.reason, retry_after=cause.retry_after)
        self.provider = provider


async def dispatch(
    deps: Deps, claimed: status.Claimed, message: OutgoingEmail
) -> tuple[EmailProvider, Sent]:
    """Send through the first provider of the order that takes it.

    The next provider is tried only when the outcome is certain to be "not sent" (no
    connection, a 429 or 5xx without a message id, or the provider's circuit is open). An
    unknown outcome (a timeout, a dropped connection) raises ``Unknown``: the retry asks the
    same provider again (its idempotency key, or Postmark's metadata search, prevents a
    duplicate), never another. Before a later provider is tried the notification is pinned
    to it, so a worker that dies mid-call is resumed with that provider alone."""
    nid = claimed.id
    order = [claimed.provider] if claimed.provider_pinned else claimed.providers
    failures: list[str] = []
    soonest: float | None = None
    for index, provider in enumerate(order):
        credential = None
        if claimed.tenant_id is not None and provider != "dev":
            credential = await load_credential(deps.db, deps.keyring, claimed.tenant_id, provider)
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
        await ratelimit.wait_turn(deps.db, key, _rate(deps.settings, provider, credential))
        resumed = claimed.attempts > 1 and provider == claimed.provider
        try:
            sent = await send_via(deps, provider, credential, message, resumed=resumed)
        except RetryableSendError as exc:
            if not exc.certain:
                raise Unknown(provider, exc) from None
            failures.append(f"{provider}: {exc.reason}")
            opened = None if exc.rate_limited else await deps.circuits.failed(key, exc.reason)
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


async def send_via(
    deps: Deps,
    provider: EmailProvider,
    credential: Credential | None,
    message: OutgoingEmail,
    *,
    resumed: bool,
) -> Sent:
    """One provider, with the tenant's key when it has one, else the platform's."""
    settings = deps.settings.email
    timeout = settings.provider_timeout_seconds
    if provider == "dev":
        config = SmtpConfig(
            host=settings.dev_smtp_host, port=settings.dev_smtp_port, security="none"
        )
        try:
            return await send_smtp(config, message, timeout=timeout)
        except RetryableSendError as exc:
            if not exc.reason.startswith("SMTP connection failed"):
                raise
            raise RetryableSendError(
                f"no SMTP server at {config.host}:{config.port}; run `make mail` or Mailpit "
                f"({exc.reason})",
                certain=exc.certain,
            ) from None
    if provider == "smtp":
        if credential and credential.smtp:
            # A tenant's own server: the SSRF rule applies (core.outbound).
            guard = allowlist(settings.smtp_allowed_hosts)
            return await send_smtp(credential.smtp, message, timeout=timeout, guard=guard)
        if settings.smtp_host is not None:
            config = SmtpConfig(
                host=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=settings.smtp_password.get() if settings.smtp_password else None,
                security=settings.smtp_security,
            )
        else:
            raise PermanentSendError("no SMTP server for this tenant or the platform")
        return await send_smtp(config, message, timeout=timeout)
    if provider == "resend":
        key = _api_key(credential, settings.resend_api_key, "Resend API key")
        return await send_resend(
            deps.http,
            base_url=settings.resend_api_url,
            api_key=key,
            message=message,
            timeout=timeout,
        )
    token = _api_key(credential, settings.postmark_server_token, "Postmark server token")
    if resumed:
        # An earlier attempt may have reached Postmark (it died mid-call or timed out):
        # Postmark may have sent it already, and has no idempotency key to ask.
        earlier = await find_postmark_message(
            deps.http,
            base_url=settings.postmark_api_url,
            token=token,
            notification_id=message.notification_id,
            timeout=timeout,
        )
        if earlier is not None:
            logger.info("notification %s was already sent by Postmark", message.notification_id)
            return Sent(earlier, "found the earlier send at Postmark; not sent again")
    try:
        return await send_postmark(
            deps.http,
            base_url=settings.postmark_api_url,
            token=token,
            message=message,
            timeout=timeout,
        )
    except RetryableSendError as exc:
        if exc.certain:
            raise
        # It may have been sent: give Postmark's search time to see it before the retry.
        raise RetryableSendError(
            exc.reason,
            retry_after=max(exc.retry_after or 0.0, settings.postmark_recheck_seconds),
        ) from None


async def send_notification(deps: Deps, notification_id: str, *, in_group: bool = False) -> None:
    """One send attempt, by the job that owns the notification. A retry is the job's own
    (RetryableError); in a group (``send_emails``) it moves to a job of its own instead."""
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
        provider, sent = await dispatch(deps, claimed, message)
    except (PermanentSendError, DecryptionFailed) as exc:
        reason = exc.reason if isinstance(exc, PermanentSendError) else exc.message
        if isinstance(exc, PermanentSendError) and exc.inactive_recipient:
            await suppression.add(
                deps.db,
                claimed.tenant_id,
                [*claimed.to, *claimed.cc, *claimed.bcc],
                reason="inactive_recipient",
                provider="postmark",
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
                    deps.db, nid, reason=reason, provider=start, pinned=pinned, delay=delay
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
