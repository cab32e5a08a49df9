"""Worker side of egress: ``mimic.tasks.send_email`` and ``handle_email_delivery_event``."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import procrastinate

from mimic import metrics
from mimic.crypto import DecryptionFailed
from mimic.deps import Deps
from mimic.egress.credentials import Credential, load_credential
from mimic.egress.providers import (
    OutgoingEmail,
    PermanentSendError,
    RetryableSendError,
    Sent,
    SmtpConfig,
    find_postmark_message,
    send_postmark,
    send_resend,
    send_smtp,
)
from mimic.egress.store import SEND_TASK, queries
from mimic.egress.tracking import EVENT_TASK, apply_email_event
from mimic.ingress.delivery import run_delivery
from mimic.jobs import (
    QUEUE_EMAIL,
    QUEUE_WEBHOOKS,
    BackoffRetry,
    RetryableError,
    deps_of,
    survive_shutdown,
)
from mimic.settings import Secret, Settings

logger = logging.getLogger(__name__)


class EmailFailed(Exception):
    """A send failed for good; the job fails and is not retried automatically."""


async def _credential(deps: Deps, row: Any) -> Credential | None:
    if row["tenant_id"] is None or row["provider"] == "dev":
        return None
    return await load_credential(deps.db, deps.keyring, row["tenant_id"], row["provider"])


def _api_key(credential: Credential | None, platform: Secret | None, what: str) -> str:
    """The tenant's key when it has one, else the platform's."""
    if credential is not None and credential.api_key:
        return credential.api_key
    if platform is not None:
        return platform.get()
    raise PermanentSendError(f"no {what} for this tenant or the platform")


async def dispatch(deps: Deps, row: Any, message: OutgoingEmail, *, resumed: bool) -> Sent:
    """Send through the row's provider with the tenant's key, else the platform's."""
    settings = deps.settings
    timeout = settings.provider_timeout_seconds
    provider = row["provider"]
    credential = await _credential(deps, row)
    if provider == "dev":
        config = SmtpConfig(
            host=settings.dev_smtp_host, port=settings.dev_smtp_port, security="none"
        )
        return await send_smtp(config, message, timeout=timeout)
    if provider == "smtp":
        if credential and credential.smtp:
            config = credential.smtp
        elif settings.smtp_host is not None:
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
        # An earlier attempt may have reached Postmark (it died mid-call, timed out, or got
        # a 5xx): Postmark may have sent it already, and has no idempotency key to ask.
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
        # It may have been sent: give Postmark's search time to see it before the retry.
        raise RetryableSendError(
            exc.reason,
            retry_after=max(exc.retry_after or 0.0, settings.postmark_recheck_seconds),
        ) from None


async def _record(
    deps: Deps, notification_id: uuid.UUID, status: str, detail: str | None, **update: Any
) -> None:
    async with deps.db.transaction() as conn:
        if status == "sent":
            changed = await conn.execute(
                queries["mark_sent"], notification_id, update["message_id"]
            )
        else:
            changed = await conn.execute(
                queries["mark_unsent"], notification_id, update["new_status"], detail
            )
        # Only while still `sending`: a provider event may have moved it on already.
        if changed != "UPDATE 0":
            await conn.execute(queries["add_timeline"], notification_id, status, detail, None, None)


async def send_notification(deps: Deps, notification_id: str) -> None:
    nid = uuid.UUID(notification_id)
    row = await deps.db.fetchrow(queries["claim_send"], nid)
    if row is None:
        status = await deps.db.fetchval(queries["get_status"], nid)
        if status is None:
            raise EmailFailed(f"notification {notification_id} does not exist")
        logger.info("notification %s already %s; not sending again", notification_id, status)
        return
    await deps.db.execute(
        queries["add_timeline"], nid, "sending", f"attempt {row['attempts']}", None, None
    )
    message = OutgoingEmail(
        notification_id=notification_id,
        sender=row["from"],
        to=list(row["to"]),
        cc=list(row["cc"]),
        bcc=list(row["bcc"]),
        reply_to=row["reply_to"],
        subject=row["subject"],
        html=row["html"],
        text=row["text"],
        tags=dict(_tags(row["tags"])),
    )
    provider = row["provider"]
    try:
        sent = await dispatch(deps, row, message, resumed=row["attempts"] > 1)
    except (PermanentSendError, DecryptionFailed) as exc:
        reason = exc.reason if isinstance(exc, PermanentSendError) else exc.message
        await _record(deps, nid, "failed", reason, new_status="failed")
        metrics.emails_finished.labels(provider, "failed").inc()
        logger.error("notification %s failed: %s", notification_id, reason)
        raise EmailFailed(reason) from None
    except Exception as exc:
        # RetryableSendError, or anything unexpected (its message may hold a key, so only
        # the type is kept): retried within the attempt budget, never left in `sending`.
        if isinstance(exc, RetryableSendError):
            reason, retry_after = exc.reason, exc.retry_after
        else:
            reason, retry_after = f"unexpected error: {type(exc).__name__}", None
        if row["attempts"] < deps.settings.email_max_attempts:
            await _record(deps, nid, "retrying", reason, new_status="queued")
            metrics.emails_finished.labels(provider, "retry").inc()
            logger.warning("notification %s: %s; will retry", notification_id, reason)
            raise RetryableError(reason, retry_after=retry_after) from None
        await _record(deps, nid, "failed", reason, new_status="failed")
        metrics.emails_finished.labels(provider, "failed").inc()
        logger.error("notification %s failed: %s", notification_id, reason)
        raise EmailFailed(reason) from None
    detail = f"{provider} message {sent.message_id}" + (f"; {sent.note}" if sent.note else "")
    await _record(deps, nid, "sent", detail, message_id=sent.message_id)
    metrics.emails_finished.labels(provider, "sent").inc()
    logger.info("notification %s sent via %s", notification_id, provider)


def _tags(value: Any) -> dict[str, str]:
    return dict(json.loads(value)) if isinstance(value, str) else dict(value or {})


def register(app: procrastinate.App, settings: Settings) -> None:
    retry = BackoffRetry(
        base=settings.delivery_backoff_base_seconds, cap=settings.delivery_backoff_max_seconds
    )

    @app.task(name=SEND_TASK, queue=QUEUE_EMAIL, pass_context=True, retry=retry)
    @survive_shutdown
    async def send_email(context: procrastinate.JobContext, notification_id: str) -> None:
        await send_notification(deps_of(context), notification_id)

    @app.task(name=EVENT_TASK, queue=QUEUE_WEBHOOKS, pass_context=True, retry=retry)
    @survive_shutdown
    async def handle_email_delivery_event(
        context: procrastinate.JobContext, delivery_id: str
    ) -> None:
        await run_delivery(deps_of(context), delivery_id, apply_email_event)
