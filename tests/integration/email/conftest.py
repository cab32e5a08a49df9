"""Fixtures shared by the email tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import SmtpSink


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A local SMTP server that keeps what it receives (a module may define its own)."""
    with SmtpSink() as sink:
        yield sink
