"""Logging setup. A filter masks every configured secret in case one slips into a message."""

from __future__ import annotations

import logging
import sys
import urllib.parse
from collections.abc import Iterable

from mimic.core.errors import ExpectedJobError
from mimic.core.settings import Settings, every_secret

MASK = "[redacted]"


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


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(NoTracebackForExpectedJobErrors())
    handler.addFilter(RedactSecrets(settings_secrets(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.server.log_level)
    # httpx logs every request URL at INFO, httpcore every header problem at DEBUG (which can
    # quote an Authorization value): keep both at WARNING.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
