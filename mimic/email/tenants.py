"""What an admin allows a tenant: the extra domains its keys may send from, whether its
sends may go through the platform's providers, and how many it may send per UTC day. Read
with the tenant's credentials as one ``SenderPolicy`` for the sender rule and the quota
(``submit``).

The only module that writes ``tenant_settings``.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection
from typing import Annotated, Any

import msgspec

from mimic.core.db import Database, as_struct
from mimic.email import quota
from mimic.email.addresses import domain_of, validate_domain
from mimic.email.repository import queries
from mimic.email.schemas import CredentialProvider

#: The most sender domains one tenant may be given.
MAX_SENDER_DOMAINS = 50
#: The largest daily send quota (more is as good as none: leave it null).
MAX_DAILY_SEND_QUOTA = 1_000_000_000


def default_fallback(*, dev: bool) -> bool:
    """A tenant with no settings stored may send through the platform's providers in dev (so
    the README's examples work as pasted with a fresh tenant key), never in production."""
    return dev


class TenantSettingsIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Domains the tenant's keys may send from besides those of its credentials' from_email:
    #: domain names (IDNA; stored lower case as A-labels), exact match: a subdomain is not
    #: covered by its parent, and wildcards are refused.
    sender_domains: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=253)]],
        msgspec.Meta(max_length=MAX_SENDER_DOMAINS),
    ]
    #: May the tenant's keys send through the platform's providers (when the tenant has no
    #: credential for the chosen provider)? Its sender is then the platform's EMAIL_FROM.
    platform_fallback: bool
    #: Emails the tenant may have accepted per UTC day, by any key (its own or an admin's
    #: acting for it); more is 429 quota_exceeded. Null or omitted: no quota.
    daily_send_quota: Annotated[int, msgspec.Meta(ge=0, le=MAX_DAILY_SEND_QUOTA)] | None = None


class TenantSettingsOut(msgspec.Struct, kw_only=True):
    tenant_id: str
    sender_domains: list[str]
    platform_fallback: bool
    daily_send_quota: int | None
    #: Both null while nothing is stored for the tenant: the values above are the defaults.
    created_at: datetime.datetime | None
    updated_at: datetime.datetime | None


def _defaults(tenant_id: str, *, dev: bool) -> TenantSettingsOut:
    return TenantSettingsOut(
        tenant_id=tenant_id,
        sender_domains=[],
        platform_fallback=default_fallback(dev=dev),
        daily_send_quota=None,
        created_at=None,
        updated_at=None,
    )


async def get_settings(db: Database, tenant_id: str, *, dev: bool) -> TenantSettingsOut:
    row = await db.fetchrow(queries["get_tenant_settings"], tenant_id)
    return _defaults(tenant_id, dev=dev) if row is None else as_struct(row, TenantSettingsOut)


def check_domains(values: list[str]) -> list[str]:
    """Each domain validated and normalised (the field named in the error), duplicates once."""
    found: dict[str, None] = {}
    for index, value in enumerate(values):
        found[validate_domain(value, f"sender_domains[{index}]")] = None
    return list(found)


async def put_settings(
    db: Database, tenant_id: str, body: TenantSettingsIn, *, dev: bool
) -> tuple[dict[str, Any], TenantSettingsOut]:
    """Store the tenant's settings; returns what they were before (for the audit log) and
    what they are now. Setting a quota counts the sends the tenant has had accepted today
    (``quota.recount``): a quota set at noon already counts the morning's mail."""
    domains = check_domains(body.sender_domains)
    async with db.transaction() as conn:
        old = await conn.fetchrow(queries["lock_tenant_settings"], tenant_id)
        row = await conn.fetchrow(
            queries["put_tenant_settings"],
            tenant_id,
            domains,
            body.platform_fallback,
            body.daily_send_quota,
        )
        if body.daily_send_quota is not None:
            await quota.recount(conn, tenant_id)
    assert row is not None
    before: dict[str, Any] = (
        {
            "sender_domains": [],
            "platform_fallback": default_fallback(dev=dev),
            "daily_send_quota": None,
            "stored": False,
        }
        if old is None
        else {
            "sender_domains": list(old["sender_domains"]),
            "platform_fallback": old["platform_fallback"],
            "daily_send_quota": old["daily_send_quota"],
            "stored": True,
        }
    )
    return before, as_struct(row, TenantSettingsOut)


class SenderPolicy(msgspec.Struct, kw_only=True, frozen=True):
    """What a tenant may send as: its credentials (in failover order) with their from_email,
    and what an admin allowed it (with its daily send quota, None for none)."""

    tenant_id: str
    providers: list[CredentialProvider]
    from_emails: list[str]
    sender_domains: list[str]
    platform_fallback: bool
    daily_send_quota: int | None = None

    def credentials(self, provider: str | None) -> list[tuple[CredentialProvider, str]]:
        """(provider, from_email) of the tenant's credential for ``provider``, or (None)
        of all its credentials, in failover order."""
        pairs = zip(self.providers, self.from_emails, strict=True)
        return [(p, f) for p, f in pairs if provider is None or p == provider]

    @property
    def credential_domains(self) -> list[str]:
        """The domains of its credentials' from_email (A-labels, lower case), each once."""
        return list(dict.fromkeys(domain_of(f) for f in self.from_emails))


async def sender_policies(
    db: Database, tenant_ids: Collection[str], *, dev: bool
) -> dict[str, SenderPolicy]:
    """Every named tenant's policy, in one query (a batch's tenants at once)."""
    if not tenant_ids:
        return {}
    rows = await db.fetch(queries["sender_policies"], sorted(set(tenant_ids)))
    policies: dict[str, SenderPolicy] = {}
    for row in rows:
        stored = row["platform_fallback"] is not None
        policies[row["tenant_id"]] = SenderPolicy(
            tenant_id=row["tenant_id"],
            providers=msgspec.convert(list(row["providers"]), list[CredentialProvider]),
            from_emails=list(row["from_emails"]),
            sender_domains=list(row["sender_domains"]) if stored else [],
            platform_fallback=row["platform_fallback"] if stored else default_fallback(dev=dev),
            daily_send_quota=row["daily_send_quota"],
        )
    return policies
