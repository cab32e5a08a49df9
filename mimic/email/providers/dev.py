"""The dev provider: SMTP to a local Mailpit (``make mail``), no login, no TLS."""

from __future__ import annotations

import httpx

from mimic.core.settings import EmailSettings
from mimic.email.providers import (
    Credential,
    OutgoingEmail,
    Provider,
    RetryableSendError,
    Sent,
    SmtpConfig,
)
from mimic.email.providers.smtp import send_smtp


async def send(
    http_client: httpx.AsyncClient,
    settings: EmailSettings,
    credential: Credential | None,
    message: OutgoingEmail,
    /,
    *,
    resumed: bool,
) -> Sent:
    config = SmtpConfig(host=settings.dev_smtp_host, port=settings.dev_smtp_port, security="none")
    try:
        return await send_smtp(
            config,
            message,
            timeout=settings.provider_timeout_seconds,
            deadline=settings.smtp_send_deadline_seconds,
        )
    except RetryableSendError as exc:
        if not exc.reason.startswith("SMTP connection failed"):
            raise
        raise RetryableSendError(
            f"no SMTP server at {config.host}:{config.port}; run `make mail` or Mailpit "
            f"({exc.reason})",
            certain=exc.certain,
        ) from None


PROVIDER = Provider(
    name="dev",
    send=send,
    configured=lambda settings: True,
    platform_rate=lambda settings: 0.0,
)
