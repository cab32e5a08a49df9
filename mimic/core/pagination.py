"""Keyset pagination: an opaque cursor for "the rows after (created_at, id)", newest first."""

from __future__ import annotations

import base64
import datetime
import inspect
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from mimic.core.errors import BadRequest


def encode_cursor(at: datetime.datetime, row_id: uuid.UUID | str) -> str:
    raw = f"{at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime.datetime, uuid.UUID]:
    at, ident = decode_text_cursor(cursor)
    try:
        return at, uuid.UUID(ident)
    except ValueError:
        raise BadRequest("cursor is not one this API returned", code="invalid_cursor") from None


def decode_text_cursor(cursor: str) -> tuple[datetime.datetime, str]:
    """For tables keyed by text (e.g. an address) rather than a uuid."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, sep, ident = raw.partition("|")
        at = datetime.datetime.fromisoformat(when)
        if at.tzinfo is None or not sep:
            raise ValueError(when)
        return at, ident
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("cursor is not one this API returned", code="invalid_cursor") from None


T = TypeVar("T")


def page(
    rows: Sequence[T], limit: int, key: Callable[[T], tuple[datetime.datetime, uuid.UUID | str]]
) -> tuple[list[T], str | None]:
    """Rows fetched with ``limit + 1``: this page, and the cursor of the next (None: last)."""
    items = list(rows[:limit])
    return items, encode_cursor(*key(items[-1])) if len(rows) > limit else None


def after(cursor: str | None) -> tuple[datetime.datetime | None, uuid.UUID | None]:
    """The (time, id) to continue after, or (None, None) for the first page."""
    return decode_cursor(cursor) if cursor else (None, None)


def aware(value: datetime.datetime | None) -> datetime.datetime | None:
    """A query-string time without an offset is taken as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value


def known_query_only(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Litestar guard for lists: a query parameter the route does not take is a 400 naming the
    ones it does (a misspelt filter, ?type= for ?event_type=, would otherwise return every
    row, unfiltered)."""
    known = [name for name in inspect.signature(handler.fn).parameters if name not in _NOT_QUERY]
    unknown = sorted(set(connection.query_params) - set(known))
    if unknown:
        raise BadRequest(
            f"unknown query parameter(s) {', '.join(unknown)}; this list takes: {', '.join(known)}",
            code="unknown_parameter",
        )


#: Handler arguments that are never query parameters.
_NOT_QUERY = frozenset({"self", "deps", "request", "routing", "templates", "steps", "data"})
