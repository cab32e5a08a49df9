"""Each status and provider vocabulary is defined once in Python; the SQL CHECKs agree."""

from __future__ import annotations

import re
from typing import Any, get_args

import asyncpg
import pytest

from mimic.core.settings import EmailProvider
from mimic.email.schemas import CredentialProvider, NotificationStatus
from mimic.email.suppression import SuppressionReason
from mimic.events.schemas import BulkRetryStatus, DeliveryStatus, EventStatus

VOCABULARIES: list[tuple[str, str, Any]] = [
    ("webhook_events", "status", EventStatus),
    ("webhook_deliveries", "status", DeliveryStatus),
    ("notifications", "status", NotificationStatus),
    ("notifications", "provider", EmailProvider),
    ("provider_credentials", "provider", CredentialProvider),
    ("bulk_retries", "status", BulkRetryStatus),
    ("suppressions", "reason", SuppressionReason),
]


async def check_values(db: asyncpg.Connection, table: str, column: str) -> set[str]:
    definitions = await db.fetch(
        """
        SELECT pg_get_constraintdef(c.oid) AS definition
          FROM pg_constraint c
         WHERE c.conrelid = $1::regclass AND c.contype = 'c'
        """,
        table,
    )
    mine = [d["definition"] for d in definitions if re.search(rf"\b{column}\b", d["definition"])]
    assert len(mine) == 1, f"one CHECK on {table}.{column}, found {mine}"
    return set(re.findall(r"'([^']+)'::text", mine[0]))


@pytest.mark.parametrize(("table", "column", "vocabulary"), VOCABULARIES)
async def test_sql_check_matches_the_python_vocabulary(
    db: asyncpg.Connection, table: str, column: str, vocabulary: Any
) -> None:
    assert await check_values(db, table, column) == set(get_args(vocabulary))


def test_credential_providers_are_email_providers() -> None:
    assert set(get_args(CredentialProvider)) < set(get_args(EmailProvider))
