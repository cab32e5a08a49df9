"""SMTP through aiosmtplib (also the dev provider, which sends to Mailpit)."""

from __future__ import annotations

import email.message
import email.utils

import aiosmtplib

from mimic.email.providers import (
    OutgoingEmail,
    PermanentSendError,
    RetryableSendError,
    Sent,
    SmtpConfig,
)


def mime_message(message: OutgoingEmail) -> email.message.EmailMessage:
    mime = email.message.EmailMessage()
    mime["From"] = message.sender
    mime["To"] = ", ".join(message.to)
    if message.cc:
        mime["Cc"] = ", ".join(message.cc)
    if message.reply_to:
        mime["Reply-To"] = message.reply_to
    mime["Subject"] = message.subject
    mime["Date"] = email.utils.formatdate(localtime=False)
    # The same Message-ID on every retry, so receivers can drop a duplicate.
    mime["Message-ID"] = f"<{message.notification_id}@mimic>"
    mime["X-Mimic-Notification-Id"] = message.notification_id
    mime.set_content(message.text)
    mime.add_alternative(message.html, subtype="html")
    return mime


async def send_smtp(config: SmtpConfig, message: OutgoingEmail, *, timeout: float) -> Sent:
    mime = mime_message(message)
    try:
        refused, _reply = await aiosmtplib.send(
            mime,
            recipients=[*message.to, *message.cc, *message.bcc],
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            use_tls=config.security == "tls",
            start_tls=config.security == "starttls",
            timeout=timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        every = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        raise PermanentSendError(f"SMTP refused recipients: {every}") from None
    except aiosmtplib.SMTPResponseException as exc:
        reason = f"SMTP {exc.code}: {exc.message}"
        if 400 <= exc.code < 500:
            raise RetryableSendError(reason) from None
        raise PermanentSendError(reason) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise RetryableSendError(f"SMTP connection failed: {type(exc).__name__}") from None
    note = None
    if refused:
        # Some recipients were refused; the others got the message.
        note = "refused: " + "; ".join(
            f"{rcpt}: {r.code} {r.message}" for rcpt, r in refused.items()
        )
    return Sent(str(mime["Message-ID"]), note)
