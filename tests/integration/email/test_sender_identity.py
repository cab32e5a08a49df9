"""Sender identity: a tenant key sends only from its own domains, and through the platform's
providers only when an admin allowed it. Played as the hostile tenant, against the real app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core.settings import Secret, Settings
from tests.fakes import FakeHTTPServer, Reply, SmtpSink, resend_responder
from tests.helpers import (
    ADMIN,
    client_for,
    dev_mail_settings,
    make_settings,
    new_key,
    running_worker,
    wait_for_value,
)

SEND = "/api/v1/notifications/email"
BATCH = "/api/v1/notifications/email/batch"
#: The platform's own sender; the hostile tenant wants an address at its domain.
PLATFORM_FROM = "Mimic <no-reply@platform.example>"
FORGED = "Security <security@platform.example>"
ACME_KEY = "re_acme_secret_key_AAAA1111"


def reset(**fields: Any) -> dict[str, Any]:
    """A password_reset whose link the sender chose."""
    return {
        "to": "victim@example.com",
        "template": "password_reset",
        "data": {
            "name": "Vic",
            "reset_url": "https://evil.example/reset",
            "expires_in_minutes": 30,
        },
        **fields,
    }


def settings_url(tenant: str) -> str:
    return f"/api/v1/tenants/{tenant}/settings"


@pytest.fixture
def resend() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer(resend_responder()) as server:
        yield server


@pytest.fixture
def settings(database_url: str, smtp: SmtpSink, resend: FakeHTTPServer) -> Settings:
    """The platform sends through the dev provider (to ``smtp``) as PLATFORM_FROM; tenant
    Resend credentials reach the fake Resend."""
    return dev_mail_settings(
        database_url, smtp.port, EMAIL_FROM=PLATFORM_FROM, RESEND_API_URL=resend.url
    )


@pytest.fixture
async def acme(settings: Settings) -> dict[str, str]:
    return {"X-API-Key": await new_key(settings, "acme")}


async def put_credential(
    client: AsyncTestClient[Litestar], from_email: str, provider: str = "resend"
) -> None:
    body = {"api_key": ACME_KEY, "from_email": from_email}
    response = await client.put(
        f"/api/v1/tenants/acme/credentials/{provider}", json=body, headers=ADMIN
    )
    assert response.status_code == 200, response.text


async def put_settings(
    client: AsyncTestClient[Litestar], domains: list[str], fallback: bool
) -> dict[str, Any]:
    body = {"sender_domains": domains, "platform_fallback": fallback}
    response = await client.put(settings_url("acme"), json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def nothing_stored(db: asyncpg.Connection) -> bool:
    notifications = await db.fetchval("SELECT count(*) FROM notifications")
    jobs = await db.fetchval(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name LIKE 'mimic.tasks.send_email%'"
    )
    return bool(notifications == 0 and jobs == 0)


async def test_a_tenant_key_cannot_send_as_the_platform(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    # No credential, no settings: in dev the tenant may use the platform, but not its name.
    forged = await client.post(SEND, json=reset(**{"from": FORGED}), headers=acme)
    assert forged.status_code == 403, forged.text
    assert forged.json()["error"] == "sender_not_allowed"
    detail = forged.json()["detail"]
    assert detail.startswith("from: 'security@platform.example'")
    assert "has none" in detail
    assert settings_url("acme") in detail

    # A credential's from_email is the tenant's own claim: it does not make the platform's
    # providers send as that domain (acme has no resend credential, so resend is the
    # platform's).
    await put_credential(client, "security@platform.example", provider="postmark")
    via_platform = reset(**{"from": FORGED, "provider": "dev"})
    refused = await client.post(SEND, json=via_platform, headers=acme)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "sender_not_allowed"

    # Even with an admin-set domain of its own, the platform's is not in the list.
    await put_settings(client, ["acme.example"], fallback=True)
    listed = await client.post(SEND, json=via_platform, headers=acme)
    assert listed.status_code == 403
    assert "allowed" in listed.json()["detail"]
    assert "acme.example" in listed.json()["detail"]

    # One forged message refuses a whole batch.
    batch = {"messages": [reset(provider="dev"), reset(**{"from": FORGED, "provider": "dev"})]}
    refused_batch = await client.post(BATCH, json=batch, headers=acme)
    assert refused_batch.status_code == 403, refused_batch.text
    assert refused_batch.json()["error"] == "sender_not_allowed"
    assert refused_batch.json()["detail"].startswith("messages[1]: sender_not_allowed: from:")
    assert await nothing_stored(db)


async def test_reply_to_and_subdomains_outside_the_tenants_domains_are_refused(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    await put_credential(client, "Acme <billing@acme.example>")
    foreign = await client.post(SEND, json=reset(reply_to="Help <help@evil.example>"), headers=acme)
    assert foreign.status_code == 403, foreign.text
    assert foreign.json()["error"] == "sender_not_allowed"
    assert foreign.json()["detail"].startswith("reply_to: 'help@evil.example'")
    assert "acme.example" in foreign.json()["detail"]

    # Exact match: neither a subdomain of an allowed domain nor a look-alike is allowed.
    for sender in (
        "billing@mail.acme.example",
        "billing@notacme.example",
        "billing@acme.example.evil.example",
    ):
        refused = await client.post(SEND, json=reset(**{"from": sender}), headers=acme)
        assert refused.status_code == 403, sender
    assert await nothing_stored(db)


async def test_a_tenant_sends_from_its_credentials_domain(
    client: AsyncTestClient[Litestar],
    acme: dict[str, str],
    settings: Settings,
    db: asyncpg.Connection,
    resend: FakeHTTPServer,
) -> None:
    await put_credential(client, "Acme <billing@acme.example>")
    body = reset(**{"from": "Billing <billing@acme.example>", "reply_to": "help@ACME.example"})
    sent = await client.post(SEND, json=body, headers=acme)
    assert sent.status_code == 202, sent.text
    default = await client.post(SEND, json=reset(to="other@example.com"), headers=acme)
    assert default.status_code == 202, default.text

    async with running_worker(settings):
        await wait_for_value(
            db,
            "SELECT count(*) FROM notifications WHERE status = 'sent'",
            until=lambda n: n == 2,
        )
    froms = {r.json()["to"][0]: r.json()["from"] for r in resend.requests}
    assert froms == {
        "victim@example.com": "Billing <billing@acme.example>",
        "other@example.com": "Acme <billing@acme.example>",  # its credential's from_email
    }
    assert {r.headers["authorization"] for r in resend.requests} == {f"Bearer {ACME_KEY}"}


async def test_an_admin_set_sender_domain_works(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    shown = await put_settings(client, ["News.Acme.Example", "bücher.example"], fallback=True)
    assert shown["sender_domains"] == ["news.acme.example", "xn--bcher-kva.example"]

    # Through the platform (no credential): from and reply_to at an admin-set domain.
    body = reset(**{"from": "News <hello@news.acme.example>", "reply_to": "a@Bücher.example"})
    sent = await client.post(SEND, json=body, headers=acme)
    assert sent.status_code == 202, sent.text
    # Through its own credential, an admin-set domain counts as well as the credential's.
    await put_credential(client, "billing@acme.example")
    own = await client.post(SEND, json=reset(**{"from": "x@news.acme.example"}), headers=acme)
    assert own.status_code == 202, own.text
    rows = await db.fetch('SELECT "from", provider FROM notifications ORDER BY created_at')
    assert [(r["from"], r["provider"]) for r in rows] == [
        ("News <hello@news.acme.example>", "dev"),
        ("x@news.acme.example", "resend"),
    ]


async def test_without_a_credential_or_fallback_a_tenant_key_cannot_send(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    await put_settings(client, ["acme.example"], fallback=False)
    refused = await client.post(SEND, json=reset(), headers=acme)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "platform_fallback_not_allowed"
    assert settings_url("acme") in refused.json()["detail"]
    assert "platform_fallback" in refused.json()["detail"]

    # A credential for another provider does not open the platform's for this one.
    await put_credential(client, "billing@acme.example")
    other = await client.post(SEND, json=reset(provider="smtp"), headers=acme)
    assert other.status_code == 403
    assert other.json()["error"] == "platform_fallback_not_allowed"
    batch = await client.post(BATCH, json={"messages": [reset(provider="dev")]}, headers=acme)
    assert batch.status_code == 403
    assert batch.json()["error"] == "platform_fallback_not_allowed"
    assert await nothing_stored(db)


async def test_with_fallback_on_a_tenant_sends_through_the_platform_as_the_platform(
    client: AsyncTestClient[Litestar],
    acme: dict[str, str],
    settings: Settings,
    db: asyncpg.Connection,
    smtp: SmtpSink,
) -> None:
    await put_settings(client, [], fallback=True)
    sent = await client.post(SEND, json=reset(), headers=acme)
    assert sent.status_code == 202, sent.text
    batch = await client.post(BATCH, json={"messages": [reset(to="b@example.com")]}, headers=acme)
    assert batch.status_code == 202, batch.text
    # With a credential for another provider, a send through the platform's is still the
    # platform's sender, not the credential's.
    await put_credential(client, "Acme <billing@acme.example>")
    other = await client.post(SEND, json=reset(to="c@example.com", provider="dev"), headers=acme)
    assert other.status_code == 202, other.text
    async with running_worker(settings):
        await wait_for_value(
            db,
            "SELECT count(*) FROM notifications WHERE status = 'sent'",
            until=lambda n: n == 3,
        )
    assert {m["From"] for m in smtp.messages} == {PLATFORM_FROM}
    rows = await db.fetch('SELECT tenant_id, "from", provider FROM notifications')
    assert {(r["tenant_id"], r["from"], r["provider"]) for r in rows} == {
        ("acme", PLATFORM_FROM, "dev")
    }


async def test_admin_keys_keep_their_freedom(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    await put_settings(client, [], fallback=False)  # binds acme's keys, not admins
    for tenant in ("acme", None):
        body = reset(**{"from": FORGED, "reply_to": "help@elsewhere.example"})
        if tenant is not None:
            body["tenant_id"] = tenant
        response = await client.post(SEND, json=body, headers=ADMIN)
        assert response.status_code == 202, response.text
    batch = await client.post(
        BATCH, json={"messages": [reset(tenant_id="acme", **{"from": FORGED})]}, headers=ADMIN
    )
    assert batch.status_code == 202, batch.text
    rows = await db.fetch('SELECT "from", provider FROM notifications')
    assert {(r["from"], r["provider"]) for r in rows} == {(FORGED, "dev")}


async def test_the_settings_api_is_for_admins_validated_and_audited(
    client: AsyncTestClient[Litestar], acme: dict[str, str], db: asyncpg.Connection
) -> None:
    defaults = await client.get(settings_url("acme"), headers=ADMIN)
    assert defaults.status_code == 200
    assert defaults.json() == {
        "tenant_id": "acme",
        "sender_domains": [],
        "platform_fallback": True,  # dev's default
        "daily_send_quota": None,  # no quota
        "created_at": None,
        "updated_at": None,
    }
    body = {"sender_domains": ["platform.example"], "platform_fallback": True}
    for method, own in (("GET", None), ("PUT", body)):
        refused = await client.request(method, settings_url("acme"), json=own, headers=acme)
        assert refused.status_code == 403, method
        assert refused.json()["error"] == "admin_key_required"
    assert (await client.get(settings_url("acme"))).status_code == 401

    bad: list[tuple[Any, int, str]] = [
        ({"sender_domains": ["*.acme.example"], "platform_fallback": True}, 422, "[0]"),
        (
            {"sender_domains": ["acme.example", "a b.example"], "platform_fallback": True},
            422,
            "[1]",
        ),
        ({"sender_domains": ["ann@acme.example"], "platform_fallback": True}, 422, "[0]"),
        ({"sender_domains": ["localhost"], "platform_fallback": True}, 422, "[0]"),
        (
            {"sender_domains": [f"d{i}.example" for i in range(51)], "platform_fallback": True},
            400,
            "sender_domains",
        ),
        ({"sender_domains": ["acme.example"]}, 400, "platform_fallback"),
        ({"sender_domains": "acme.example", "platform_fallback": True}, 400, "sender_domains"),
    ]
    for payload, status, named in bad:
        response = await client.put(settings_url("acme"), json=payload, headers=ADMIN)
        assert response.status_code == status, (payload, response.text)
        assert named in response.json()["detail"], response.text
        if status == 422:
            assert response.json()["error"] == "invalid_domain"
            assert response.json()["detail"].startswith("sender_domains[")
    bad_tenant = await client.put(settings_url("no tenant"), json=body, headers=ADMIN)
    assert bad_tenant.status_code == 400
    assert await db.fetchval("SELECT count(*) FROM tenant_settings") == 0

    first = {"sender_domains": ["Acme.Example", "acme.example"], "platform_fallback": False}
    stored = await client.put(settings_url("acme"), json=first, headers=ADMIN)
    assert stored.status_code == 200
    assert stored.json()["sender_domains"] == ["acme.example"]
    assert stored.json()["platform_fallback"] is False
    assert stored.json()["created_at"] is not None
    assert (await client.get(settings_url("acme"), headers=ADMIN)).json() == stored.json()
    second = {"sender_domains": [], "platform_fallback": True}
    assert (await client.put(settings_url("acme"), json=second, headers=ADMIN)).is_success

    audit = await db.fetch(
        "SELECT key_id, action, target_ids, outcome, detail FROM audit_log"
        " WHERE action = 'put_tenant_settings' ORDER BY id"
    )
    outcomes = [r["outcome"] for r in audit]
    assert outcomes[0] == "admin_key_required"  # the tenant key's attempt
    assert outcomes[-2:] == ["ok", "ok"]
    assert "invalid_domain" in outcomes
    assert audit[0]["key_id"].startswith("key_")
    assert audit[0]["key_id"] != audit[-1]["key_id"]
    assert acme["X-API-Key"] not in str([dict(r) for r in audit])
    assert audit[-1]["target_ids"] == ["acme"]
    no_quota = {"daily_send_quota": None}
    assert json.loads(audit[-2]["detail"]) == {
        "before": {"sender_domains": [], "platform_fallback": True, **no_quota, "stored": False},
        "after": {"sender_domains": ["acme.example"], "platform_fallback": False, **no_quota},
    }
    assert json.loads(audit[-1]["detail"]) == {
        "before": {
            "sender_domains": ["acme.example"],
            "platform_fallback": False,
            **no_quota,
            "stored": True,
        },
        "after": {"sender_domains": [], "platform_fallback": True, **no_quota},
    }


async def test_production_defaults_to_no_fallback_and_refuses_provider_dev(
    database_url: str, db: asyncpg.Connection, resend: FakeHTTPServer
) -> None:
    production = make_settings(
        database_url,
        MIMIC_ENV="production",
        EMAIL_PROVIDER="resend",
        RESEND_API_KEY="re_platform_key_0123456789",
        RESEND_API_URL=resend.url,
    )
    acme = {"X-API-Key": await new_key(production, "acme")}
    async with client_for(create_app(production)) as client:
        shown = await client.get(settings_url("acme"), headers=ADMIN)
        assert shown.json()["platform_fallback"] is False
        refused = await client.post(SEND, json=reset(), headers=acme)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "platform_fallback_not_allowed"

        await put_settings(client, [], fallback=True)
        for headers in (ADMIN, acme):
            dev = await client.post(SEND, json=reset(provider="dev"), headers=headers)
            assert dev.status_code == 422, dev.text
            assert dev.json()["error"] == "provider_not_configured"
            assert "MIMIC_ENV=production" in dev.json()["detail"]
            batch = {"messages": [reset(provider="dev")]}
            refused_batch = await client.post(BATCH, json=batch, headers=headers)
            assert refused_batch.status_code == 422
        assert await nothing_stored(db)
        allowed = await client.post(SEND, json=reset(), headers=acme)
        assert allowed.status_code == 202, allowed.text
    assert await db.fetchval('SELECT "from" FROM notifications') == "Mimic <no-reply@mimic.local>"


async def test_a_credential_deleted_before_the_send_never_falls_back_to_the_platform(
    client: AsyncTestClient[Litestar],
    acme: dict[str, str],
    db: asyncpg.Connection,
    settings: Settings,
    smtp: SmtpSink,
    resend: FakeHTTPServer,
) -> None:
    # Accepted for acme's own Resend credential (at a domain the platform never vouched
    # for), then the credential goes before the worker runs: with platform fallback on, the
    # platform's account must still not send that From.
    await put_settings(client, [], fallback=True)
    await put_credential(client, "security@platform.example")
    accepted = await client.post(SEND, json=reset(**{"from": FORGED}), headers=acme)
    assert accepted.status_code == 202, accepted.text
    deleted = await client.delete("/api/v1/tenants/acme/credentials/resend", headers=ADMIN)
    assert deleted.status_code == 204, deleted.text
    # The worker's platform has a Resend key of its own: a fallback would use it.
    worker = msgspec.structs.replace(
        settings,
        email=msgspec.structs.replace(settings.email, resend_api_key=Secret("re_platform_1234")),
    )
    async with running_worker(worker):
        await wait_for_value(
            db, "SELECT status FROM notifications", until=lambda s: s == "failed", within=15
        )
    error = await db.fetchval("SELECT error FROM notifications")
    assert "never sent through the platform's account" in error
    assert smtp.messages == []  # the platform's provider sent nothing
    assert resend.requests == []


async def test_a_tenant_sees_a_class_of_provider_error_and_an_admin_the_providers_words(
    database_url: str, db: asyncpg.Connection
) -> None:
    words = "Account acct_platform_42 is suspended; write to ops@platform.example"
    refusing = FakeHTTPServer(lambda _: Reply(status=422, body={"message": words}))
    with refusing:
        settings = make_settings(
            database_url,
            EMAIL_PROVIDER="resend",
            RESEND_API_KEY="re_platform_12345678",
            RESEND_API_URL=refusing.url,
        )
        async with client_for(create_app(settings)) as client:
            tenant = {"X-API-Key": await new_key(settings, "acme")}
            accepted = await client.post(SEND, json=reset(), headers=tenant)
            assert accepted.status_code == 202, accepted.text
            nid = accepted.json()["id"]
            async with running_worker(settings):
                await wait_for_value(
                    db, "SELECT status FROM notifications", until=lambda s: s == "failed"
                )
            seen = (await client.get(f"/api/v1/notifications/{nid}", headers=tenant)).json()
            listed = (await client.get("/api/v1/notifications", headers=tenant)).json()["items"][0]
            admin = (await client.get(f"/api/v1/notifications/{nid}", headers=ADMIN)).json()
    shown_to_tenant = json.dumps([seen, listed])
    assert "Resend 422" in seen["error"]
    assert "suspended" not in shown_to_tenant
    assert "acct_platform_42" not in shown_to_tenant
    assert "admins only" in seen["error"]
    assert words in admin["error"]
    assert any(words in (step["detail"] or "") for step in admin["timeline"])
