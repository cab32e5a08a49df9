"""Email providers: Resend and Postmark over one shared httpx client, SMTP via aiosmtplib.

Keys are passed per call (never module-global), so concurrent sends for different tenants
each use their own key. Failures are classified: ``RetryableSendError`` (429, 5xx, timeouts,
Resend's concurrent-idempotency 409) or ``PermanentSendError`` (bad key, bad address,
Postmark 406 inactive recipient, ...), carrying the provider's reason.
"""

from __future__ import annotations

import contextlib
import email.message
import email.utils
import time
from typing import Any, Literal

import aiosmtplib
import httpx
import msgspec

from mimic.ingress.delivery import retry_after_seconds

ProviderKind = Literal["dev", "smtp", "resend", "postmark"]
SmtpSecurity = Literal["none", "starttls", "tls"]


class OutgoingEmail(msgspec.Struct, kw_only=True, frozen=True):
    notification_id: str
    sender: str
    to: list[str]
    cc: list[str] = msgspec.field(default_factory=list)
    bcc: list[str] = msgspec.field(default_factory=list)
    reply_to: str | None = None
    subject: str
    html: str
    text: str
    tags: dict[str, str] = msgspec.field(default_factory=dict)


class SmtpConfig(msgspec.Struct, kw_only=True, frozen=True):
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    security: SmtpSecurity = "starttls"

    def __repr__(self) -> str:  # never show the password
        return f"SmtpConfig(host={self.host!r}, port={self.port}, security={self.security!r})"


class Sent(msgspec.Struct, frozen=True):
    """The provider took the message: its id, and anything worth a line in the timeline."""

    message_id: str
    note: str | None = None


class SendError(Exception):
    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class RetryableSendError(SendError):
    pass


class PermanentSendError(SendError):
    pass


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        for key in ("message", "Message", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])[:300]
    return response.text[:300]


def _retry_after(response: httpx.Response) -> float | None:
    return retry_after_seconds(response.headers.get("retry-after"), time.time())


async def _post(http: httpx.AsyncClient, url: str, timeout: float, **kwargs: Any) -> httpx.Response:
    try:
        return await http.post(url, timeout=timeout, **kwargs)
    except httpx.TimeoutException:
        raise RetryableSendError(f"timed out after {timeout:g}s") from None
    except httpx.TransportError as exc:
        raise RetryableSendError(f"connection error: {type(exc).__name__}") from None


# --- Resend -------------------------------------------------------------------------------


async def send_resend(
    http: httpx.AsyncClient, *, base_url: str, api_key: str, message: OutgoingEmail, timeout: float
) -> Sent:
    payload: dict[str, Any] = {
        "from": message.sender,
        "to": message.to,
        "subject": message.subject,
        "html": message.html,
        "text": message.text,
        "headers": {"X-Mimic-Notification-Id": message.notification_id},
    }
    if message.cc:
        payload["cc"] = message.cc
    if message.bcc:
        payload["bcc"] = message.bcc
    if message.reply_to:
        payload["reply_to"] = message.reply_to
    if message.tags:
        payload["tags"] = [{"name": k, "value": v} for k, v in message.tags.items()]
    response = await _post(
        http,
        f"{base_url}/emails",
        timeout,
        json=payload,
        headers={
            "Authorization": f"Bearer {api_key}",
            # Resend keeps keys for 24 h: a retried send returns the first send's id.
            "Idempotency-Key": message.notification_id,
        },
    )
    if response.is_success:
        try:
            email_id = response.json().get("id")
        except (ValueError, AttributeError):
            email_id = None
        if not isinstance(email_id, str):
            # Retrying with the same Idempotency-Key returns the first send's id.
            raise RetryableSendError("Resend answered 2xx without an email id")
        return Sent(email_id)
    reason = f"Resend {response.status_code}: {_error_text(response)}"
    name = ""
    with contextlib.suppress(ValueError, AttributeError):
        name = str(response.json().get("name", ""))
    code = response.status_code
    if code == 429 or code >= 500 or (code == 409 and name == "concurrent_idempotent_requests"):
        raise RetryableSendError(reason, retry_after=_retry_after(response))
    raise PermanentSendError(reason)


# --- Postmark -----------------------------------------------------------------------------

POSTMARK_METADATA_KEY = "mimic_notification_id"


def _postmark_headers(token: str) -> dict[str, str]:
    return {"X-Postmark-Server-Token": token, "Accept": "application/json"}


async def send_postmark(
    http: httpx.AsyncClient, *, base_url: str, token: str, message: OutgoingEmail, timeout: float
) -> Sent:
    payload: dict[str, Any] = {
        "From": message.sender,
        "To": ", ".join(message.to),
        "Subject": message.subject,
        "HtmlBody": message.html,
        "TextBody": message.text,
        "MessageStream": "outbound",
        # Lets a retried send find this one (Postmark has no idempotency keys).
        "Metadata": {POSTMARK_METADATA_KEY: message.notification_id, **message.tags},
        "Headers": [{"Name": "X-Mimic-Notification-Id", "Value": message.notification_id}],
    }
    if message.cc:
        payload["Cc"] = ", ".join(message.cc)
    if message.bcc:
        payload["Bcc"] = ", ".join(message.bcc)
    if message.reply_to:
        payload["ReplyTo"] = message.reply_to
    if "tag" in message.tags:
        payload["Tag"] = message.tags["tag"]
    response = await _post(
        http, f"{base_url}/email", timeout, json=payload, headers=_postmark_headers(token)
    )
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        body = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        pass
    if response.is_success and body.get("ErrorCode", 0) == 0:
        message_id = body.get("MessageID")
        if not isinstance(message_id, str):
            raise RetryableSendError("Postmark answered without a MessageID")
        return Sent(message_id)
    reason = f"Postmark {response.status_code}: {_error_text(response)}"
    if "ErrorCode" in body:
        reason += f" (ErrorCode {body['ErrorCode']})"
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryableSendError(reason, retry_after=_retry_after(response))
    raise PermanentSendError(reason)


async def find_postmark_message(
    http: httpx.AsyncClient, *, base_url: str, token: str, notification_id: str, timeout: float
) -> str | None:
    """The MessageID of an earlier send of this notification, if Postmark has one."""
    try:
        response = await http.get(
            f"{base_url}/messages/outbound",
            params={
                "count": 1,
                "offset": 0,
                f"metadata_{POSTMARK_METADATA_KEY}": notification_id,
            },
            headers=_postmark_headers(token),
            timeout=timeout,
        )
    except httpx.HTTPError:
        raise RetryableSendError("could not check Postmark for an earlier send") from None
    if not response.is_success:
        raise RetryableSendError(
            f"could not check Postmark for an earlier send ({response.status_code})"
        )
    messages = response.json().get("Messages") or []
    if messages and isinstance(messages[0].get("MessageID"), str):
        return str(messages[0]["MessageID"])
    return None


# --- SMTP ---------------------------------------------------------------------------------


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
