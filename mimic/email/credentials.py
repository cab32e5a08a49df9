"""BYOK: tenants' provider credentials, sealed with AES-256-GCM, never shown or logged.

The only module that writes ``provider_credentials`` (``tenants`` reads which providers and
``from_email`` a tenant has, with its settings, for the sender rule).
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any

import msgspec

from mimic.core.crypto import Keyring, Sealed
from mimic.core.db import Database, as_struct
from mimic.core.errors import BadRequest, NotFound
from mimic.core.settings import MAX_RATE, MIN_RATE, SmtpSecurity
from mimic.email.addresses import validate_address
from mimic.email.providers import Credential, SmtpConfig
from mimic.email.providers.registry import REGISTRY
from mimic.email.repository import queries
from mimic.email.schemas import CredentialProvider


class SmtpIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    security: SmtpSecurity = "starttls"


class CredentialIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``api_key`` for resend/postmark, ``smtp`` for smtp; ``from_email`` for both."""

    from_email: str
    api_key: str | None = None
    smtp: SmtpIn | None = None
    #: Sends per second through this credential (unset: the platform's rate for the provider),
    #: from 0.1 to 10,000.
    rate_per_second: Annotated[float, msgspec.Meta(ge=MIN_RATE, le=MAX_RATE)] | None = None
    #: Failover order among the tenant's credentials: lower first (ties: the newest first).
    priority: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0

    def __repr__(self) -> str:  # never show the key or password
        return f"CredentialIn(from_email={self.from_email!r})"


class CredentialOut(msgspec.Struct, kw_only=True):
    tenant_id: str
    provider: str
    from_email: str
    last4: str
    rate_per_second: float | None
    priority: int
    created_at: datetime.datetime
    updated_at: datetime.datetime


def _associated(tenant_id: str, provider: str) -> bytes:
    return f"mimic-credential:{tenant_id}:{provider}".encode()


_API_KEY = re.compile(r"^[\x21-\x7e]{8,512}$")  # printable ASCII, no spaces
#: Showing the last 4 characters of a shorter secret would give too much of it away.
LAST4_MIN_LENGTH = 12


def last4(secret: str | None) -> str:
    return secret[-4:] if secret and len(secret) >= LAST4_MIN_LENGTH else ""


def _secret_payload(provider: CredentialProvider, body: CredentialIn) -> tuple[bytes, str]:
    """The plaintext to seal and the last 4 characters to show (never a secret's values)."""
    if REGISTRY[provider].credential == "smtp":
        if body.smtp is None or body.api_key is not None:
            raise BadRequest("smtp credentials need `smtp` settings and no `api_key`")
        if not body.smtp.host or not 0 < body.smtp.port < 65536:
            raise BadRequest("smtp.host must be set and smtp.port be 1-65535")
        password = body.smtp.password or ""
        if any(ch in password for ch in "\r\n\x00"):
            raise BadRequest("smtp.password must not contain line breaks or NUL")
        return msgspec.json.encode(body.smtp), last4(password)
    if not body.api_key or body.smtp is not None:
        raise BadRequest(f"{provider} credentials need `api_key` and no `smtp` settings")
    if not _API_KEY.match(body.api_key):
        raise BadRequest("api_key must be 8-512 printable ASCII characters without spaces")
    return msgspec.json.encode({"api_key": body.api_key}), last4(body.api_key)


async def put_credential(
    db: Database,
    keyring: Keyring,
    tenant_id: str,
    provider: CredentialProvider,
    body: CredentialIn,
) -> CredentialOut:
    from_email = validate_address(body.from_email, "from_email")
    plaintext, last4 = _secret_payload(provider, body)
    sealed = keyring.seal(plaintext, _associated(tenant_id, provider))
    row = await db.fetchrow(
        queries["upsert_credential"],
        tenant_id,
        provider,
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext,
        from_email,
        last4,
        body.rate_per_second,
        body.priority,
    )
    assert row is not None
    return as_struct(row, CredentialOut)


async def get_credential(db: Database, tenant_id: str, provider: str) -> CredentialOut:
    row = await db.fetchrow(queries["get_credential_public"], tenant_id, provider)
    if row is None:
        raise NotFound(f"tenant {tenant_id!r} has no {provider} credential")
    return as_struct(row, CredentialOut)


async def delete_credential(db: Database, tenant_id: str, provider: str) -> None:
    if await db.fetchval(queries["delete_credential"], tenant_id, provider) is None:
        raise NotFound(f"tenant {tenant_id!r} has no {provider} credential")


async def load_credential(
    db: Database, keyring: Keyring, tenant_id: str, provider: str
) -> Credential | None:
    row = await db.fetchrow(queries["get_credential_sealed"], tenant_id, provider)
    if row is None:
        return None
    sealed = Sealed(row["key_id"], bytes(row["nonce"]), bytes(row["ciphertext"]))
    secret: dict[str, Any] = msgspec.json.decode(
        keyring.open(sealed, _associated(tenant_id, provider))
    )
    if REGISTRY[provider].credential == "smtp":
        return Credential(
            provider=row["provider"],
            from_email=row["from_email"],
            smtp=msgspec.convert(secret, SmtpConfig),
            rate_per_second=row["rate_per_second"],
        )
    return Credential(
        provider=row["provider"],
        from_email=row["from_email"],
        api_key=secret["api_key"],
        rate_per_second=row["rate_per_second"],
    )


async def rotate_credentials(db: Database, keyring: Keyring) -> int:
    """Re-seal every credential under the current key; returns how many changed."""
    current = keyring.current_key_id
    async with db.transaction() as conn:
        rows = await conn.fetch(queries["credentials_to_rotate"], current)
        for row in rows:
            associated = _associated(row["tenant_id"], row["provider"])
            plaintext = keyring.open(
                Sealed(row["key_id"], bytes(row["nonce"]), bytes(row["ciphertext"])), associated
            )
            sealed = keyring.seal(plaintext, associated)
            await conn.execute(
                queries["reseal_credential"],
                row["tenant_id"],
                row["provider"],
                sealed.key_id,
                sealed.nonce,
                sealed.ciphertext,
            )
    return len(rows)
