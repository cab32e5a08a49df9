"""Logging setup: text in dev, JSON lines in production, each line with the ids of what it is
about (the request id, or a job's notification/delivery/event ids). A filter masks every
configured secret in case one slips into a message, in either format."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import types
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping

from pythonjsonlogger.json import JsonFormatter

from mimic.core.errors import ExpectedJobError
from mimic.core.settings import Settings, every_secret

MASK = "[redacted]"

#: The ids of what the current request or job is about, added to each of its log lines.
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "log_ids", default=types.MappingProxyType({})
)


@contextlib.contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Add ids (request_id, notification_id, ...) to every log line inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


_make_record = logging.getLogRecordFactory()


def _record_with_ids(*args: object, **kwargs: object) -> logging.LogRecord:
    """Every record carries the bound ids: as attributes (JSON, and any handler such as
    pytest's) and as ``ids`` (the text format's tail)."""
    record = _make_record(*args, **kwargs)
    found = _context.get()
    for name, value in found.items():
        setattr(record, name, value)
    record.ids = "".join(f" {k}={v}" for k, v in found.items())
    return record


if getattr(logging.getLogRecordFactory(), "__name__", "") != "_record_with_ids":
    logging.setLogRecordFactory(_record_with_ids)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(ids)s"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        masked = self._mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_text:
            record.exc_text = self._mask(record.exc_text)
        return True

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


def mask_address(address: str) -> str:
    """An email address as logs show it: its first character and its domain
    (``ann@example.com`` -> ``a***@example.com``), enough to tell two apart, not to mail one."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def mask_addresses(path: str) -> str:
    """A URL path with every segment that holds an address masked (``/api/v1/suppressions/
    ann@example.com`` -> ``/api/v1/suppressions/a***@example.com``); the rest as it was."""
    if "@" not in path and "%40" not in path.lower():
        return path
    segments = path.split("/")
    for i, segment in enumerate(segments):
        # An ASGI path is already decoded; a client that encoded the @ twice left a %40.
        decoded = urllib.parse.unquote(segment)
        if "@" in decoded:
            segments[i] = mask_address(decoded)
    return "/".join(segments)


class NoTracebackForExpectedJobErrors(logging.Filter):
    """procrastinate logs every failed job with its traceback. For the failures Mimic
    expects and has already explained in one line (retries, final failures), keep the line
    and drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ExpectedJobError):
            record.msg = f"{record.getMessage()} ({record.exc_info[1]})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def settings_secrets(settings: Settings) -> list[str]:
    values = every_secret(settings)
    if settings.database.url is not None:
        # The DSN's password alone can show up in a driver's error message.
        password = urllib.parse.urlsplit(settings.database.url.get()).password
        if password:
            values += [password, urllib.parse.unquote(password)]
    return values


def formatter(settings: Settings) -> logging.Formatter:
    chosen = settings.server.log_format
    if chosen == "json" or (chosen == "auto" and not settings.is_dev):
        # One object per line: time, level, logger, message, and the bound ids.
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            reserved_attrs=[*_RESERVED, "ids"],
        )
    return logging.Formatter(TEXT_FORMAT)


# LogRecord's own attributes: everything else on a record is a bound id (for JSON).
_RESERVED = [*logging.LogRecord("", 0, "", 0, "", None, None).__dict__, "message", "asctime"]


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings))
    handler.addFilter(NoTracebackForExpectedJobErrors())
    handler.addFilter(RedactSecrets(settings_secrets(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.server.log_level)
    # httpx logs every request URL at INFO, httpcore every header problem at DEBUG (which can
    # quote an Authorization value): keep both at WARNING.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
