"""SMTP through aiosmtplib (also the dev provider, which sends to Mailpit)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import socket
import time
import weakref
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import aiosmtplib
import httpx

from mimic.core.outbound import (
    SMTP_PORTS,
    Allowlist,
    OutboundRefused,
    Unresolved,
    allowlist,
    connect_checked,
    resolve_checked,
)
from mimic.core.settings import EmailSettings
from mimic.email.providers import (
    Credential,
    OutgoingEmail,
    PermanentSendError,
    Provider,
    RetryableSendError,
    Sent,
    SmtpConfig,
)


def _addresses(values: list[str]) -> str:
    """Address headers; a non-ASCII display name is RFC 2047-encoded."""
    shown = []
    for value in values:
        name, address = email.utils.parseaddr(value)
        if name and not name.isascii():
            value = email.utils.formataddr((name, address), charset="utf-8")
        shown.append(value)
    return ", ".join(shown)


def _text(value: str) -> str:
    """A header value; non-ASCII text is RFC 2047-encoded."""
    return value if value.isascii() else Header(value, "utf-8").encode()


def mime_message(message: OutgoingEmail) -> MIMEMultipart:
    """multipart/alternative (text, then HTML), built with the standard library's classic
    MIME classes: the same message as EmailMessage's, at about half its CPU cost per send."""
    # A boundary of our own spares the generator its search for one that occurs in no part
    # (a regular expression compiled per message). It cannot occur: both parts are base64,
    # whose lines never start with "--".
    mime = MIMEMultipart("alternative", boundary=f"mimic-{message.notification_id}")
    mime["From"] = _addresses([message.sender])
    mime["To"] = _addresses(message.to)
    if message.cc:
        mime["Cc"] = _addresses(message.cc)
    if message.reply_to:
        mime["Reply-To"] = _addresses([message.reply_to])
    mime["Subject"] = _text(message.subject)
    mime["Date"] = email.utils.formatdate(localtime=False)
    # The same Message-ID on every retry, so receivers can drop a duplicate.
    mime["Message-ID"] = f"<{message.notification_id}@mimic>"
    mime["X-Mimic-Notification-Id"] = message.notification_id
    mime.attach(MIMEText(message.text, "plain", "utf-8"))
    mime.attach(MIMEText(message.html, "html", "utf-8"))
    return mime


logger = logging.getLogger(__name__)

#: SMTP replies that count toward the circuit: 421 (service closing), 454 (temporary auth
#: failure), 530/534/535 (authentication required, mechanism too weak, credentials refused).
SMTP_UNWELL = frozenset({421, 454, 530, 534, 535})


async def send_smtp(
    config: SmtpConfig,
    message: OutgoingEmail,
    *,
    timeout: float,
    deadline: float,
    guard: Allowlist | None = None,
) -> Sent:
    """Send one message within ``deadline`` seconds overall. ``timeout`` bounds each step
    (connect, each command); the deadline bounds them all together, so a server answering a
    byte every few seconds, or a host with many unreachable addresses, holds a worker slot
    for one deadline per attempt, not a timeout per command and per address.

    With ``guard`` (a tenant's own server), the host is resolved and checked now and the
    connection goes to the checked address (see ``core.outbound``).

    What is stored (and shown by the API) is a generic class of failure with the reply code,
    never the server's text: a tenant's server could be anything, and its banner or reply
    must not leak through Mimic. The platform's own server's text goes to the log."""
    handed_over: list[bool] = []  # set once the message may have reached the server
    try:
        async with asyncio.timeout(deadline):
            return await _send_smtp(config, message, timeout, guard, handed_over)
    except TimeoutError:
        raise RetryableSendError(
            f"SMTP send took longer than its {deadline:g} s deadline", certain=not handed_over
        ) from None


async def _send_smtp(
    config: SmtpConfig,
    message: OutgoingEmail,
    timeout: float,
    guard: Allowlist | None,
    handed_over: list[bool],
) -> Sent:
    mime = mime_message(message)
    where: dict[str, object] = {"hostname": config.host, "port": config.port}
    sock: socket.socket | None = None
    if guard is not None:
        try:
            addresses = await resolve_checked(
                config.host, config.port, allowlist=guard, ports=SMTP_PORTS
            )
            sock = await connect_checked(addresses, timeout=timeout)
        except OutboundRefused as exc:
            raise PermanentSendError(f"SMTP destination refused: {exc}") from None
        except Unresolved as exc:
            raise RetryableSendError(f"SMTP connection failed: {exc}", certain=True) from None
        except (OSError, TimeoutError) as exc:
            raise RetryableSendError(
                f"SMTP connection failed: {type(exc).__name__}", certain=True
            ) from None
        where = {"hostname": config.host, "sock": sock}
    pool = None if guard is not None else _pool()
    client: aiosmtplib.SMTP | None = None
    sent_on: aiosmtplib.SMTP | None = None  # a tenant's connection, to QUIT after the send
    try:
        if pool is not None:
            client = await pool.acquire(config, timeout)
        else:
            client = _client(config, timeout, where)
            await client.connect()
        handed_over.append(True)
        refused, _reply = await client.send_message(
            mime, recipients=[*message.to, *message.cc, *message.bcc]
        )
        if pool is not None:
            pool.release(config, client)
        else:
            sent_on = client
        client = None
    except aiosmtplib.SMTPRecipientsRefused as exc:
        _log_reply(guard, "; ".join(f"{r.code} {r.message}" for r in exc.recipients))
        every = ", ".join(f"{r.recipient} ({r.code})" for r in exc.recipients)
        raise PermanentSendError(f"SMTP refused recipients: {every}") from None
    except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError) as exc:
        # Never connected (refused, no such host, connect timeout): certainly not sent.
        # (SMTPConnectResponseError, a refusing greeting, is one of these too.)
        raise RetryableSendError(
            f"SMTP connection failed: {type(exc).__name__}", certain=True
        ) from None
    except aiosmtplib.SMTPResponseException as exc:
        _log_reply(guard, f"{exc.code} {exc.message}")
        # 421 (closing the channel) and a refused login say the server or the credential is
        # unwell; any other answer is about this message (its sender, recipients, content).
        unwell = exc.code in SMTP_UNWELL
        if 400 <= exc.code < 500:
            # The server answered "not now": it did not take the message.
            raise RetryableSendError(
                f"SMTP temporary failure ({exc.code})", certain=True, unwell=unwell
            ) from None
        raise PermanentSendError(f"SMTP permanent failure ({exc.code})", unwell=unwell) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        # Dropped or timed out mid-conversation: it may have been accepted (a plain refusal
        # or DNS failure, should aiosmtplib pass one through unwrapped, is certain).
        certain = isinstance(exc, (ConnectionRefusedError, socket.gaierror))
        raise RetryableSendError(
            f"SMTP connection failed: {type(exc).__name__}", certain=certain
        ) from None
    finally:
        if client is not None:  # failed: never reuse a connection in an unknown state
            if pool is not None:
                pool.discard(config, client)
            else:
                client.close()
    if sent_on is not None:
        # A tenant's server: the message is sent; a failing QUIT changes nothing.
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await sent_on.quit()
        sent_on.close()
    if sock is not None:
        sock.close()
    note = None
    if refused:
        # Some recipients were refused; the others got the message.
        _log_reply(guard, "; ".join(f"{r.code} {r.message}" for r in refused.values()))
        note = "refused: " + ", ".join(f"{rcpt} ({r.code})" for rcpt, r in refused.items())
    return Sent(str(mime["Message-ID"]), note)


def _client(config: SmtpConfig, timeout: float, where: dict[str, object]) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        username=config.username,
        password=config.password,
        use_tls=config.security == "tls",
        start_tls=config.security == "starttls",
        timeout=timeout,
        **where,  # type: ignore[arg-type]
    )


class SmtpPool:
    """Connections to the platform's SMTP servers, reused across sends (per server and
    login). At most ``size`` are open per server: a send beyond that waits for one to be
    free. One idle longer than ``idle_seconds`` is closed, and one idle more than a second is
    checked with NOOP before use, so a server that dropped it costs a reconnect, not a failed
    send. A connection that saw any error is closed, never reused. (Tenants' own servers are
    not pooled: each send re-checks the address, see core.outbound.)"""

    def __init__(self, *, size: int = 10, idle_seconds: float = 30.0) -> None:
        self._idle: dict[SmtpConfig, list[tuple[float, aiosmtplib.SMTP]]] = {}
        self._slots: dict[SmtpConfig, asyncio.Semaphore] = {}
        self._size, self._idle_seconds = size, idle_seconds

    async def acquire(self, config: SmtpConfig, timeout: float) -> aiosmtplib.SMTP:
        """A connection to ``config``'s server; give it back with ``release`` (it worked) or
        ``discard`` (it failed)."""
        slots = self._slots.setdefault(config, asyncio.Semaphore(self._size))
        await slots.acquire()
        try:
            return await self._connection(config, timeout)
        except BaseException:
            slots.release()
            raise

    async def _connection(self, config: SmtpConfig, timeout: float) -> aiosmtplib.SMTP:
        idle = self._idle.setdefault(config, [])
        while idle:
            since, client = idle.pop()
            quiet = time.monotonic() - since
            if quiet > self._idle_seconds or not client.is_connected:
                client.close()
                continue
            if quiet > 1.0:
                try:
                    await client.noop()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()
                    continue
            return client
        client = _client(config, timeout, {"hostname": config.host, "port": config.port})
        await client.connect()
        return client

    def release(self, config: SmtpConfig, client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            self._idle.setdefault(config, []).append((time.monotonic(), client))
        else:
            client.close()
        self._slots[config].release()

    def discard(self, config: SmtpConfig, client: aiosmtplib.SMTP) -> None:
        client.close()
        self._slots[config].release()


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SmtpPool] = weakref.WeakKeyDictionary()


def _pool() -> SmtpPool:
    """One pool per event loop (a connection belongs to the loop that opened it)."""
    loop = asyncio.get_running_loop()
    found = _POOLS.get(loop)
    if found is None:
        found = _POOLS[loop] = SmtpPool()
    return found


def _log_reply(guard: Allowlist | None, text: str) -> None:
    if guard is None:  # the platform's own server: its words help the operator
        logger.warning("SMTP server replied: %s", text[:300])


async def send(
    http_client: httpx.AsyncClient,
    settings: EmailSettings,
    credential: Credential | None,
    message: OutgoingEmail,
    /,
    *,
    resumed: bool,
) -> Sent:
    """The tenant's own server when it has one, else the platform's."""
    timeout, deadline = settings.provider_timeout_seconds, settings.smtp_send_deadline_seconds
    if credential and credential.smtp:
        # A tenant's own server: the SSRF rule applies (core.outbound).
        guard = allowlist(settings.smtp_allowed_hosts)
        return await send_smtp(
            credential.smtp, message, timeout=timeout, deadline=deadline, guard=guard
        )
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
    return await send_smtp(config, message, timeout=timeout, deadline=deadline)


PROVIDER = Provider(
    name="smtp",
    send=send,
    configured=lambda settings: settings.smtp_host is not None,
    platform_rate=lambda settings: settings.smtp_rate_per_second,
    credential="smtp",
)
