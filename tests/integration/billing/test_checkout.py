"""Billing routes against a fake Stripe (a real local HTTP server playing the Stripe API
through the client's base-URL setting), and the round trip back through the gateway."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from mimic.app import create_app
from mimic.core.deps import open_deps
from mimic.core.keys import create_key, key_id
from mimic.core.settings import Settings
from tests.fakes import FakeHTTPServer, Received, Reply, form, stripe_responder
from tests.helpers import (
    ADMIN,
    client_for,
    make_settings,
    new_key,
    running_worker,
    stripe_headers,
)
from tests.procs import free_port

STRIPE_KEY = "sk_test_fakestripe_0123456789"
CHECKOUT = "/api/v1/billing/checkout-sessions"
PORTAL = "/api/v1/billing/portal-sessions"
BODY = {
    "product_type": "tentackl_solo",
    "customer_email": "ann@example.com",
    "success_url": "https://app.example.com/done",
    "cancel_url": "https://app.example.com/billing",
    "tenant_id": "acme",
}


@pytest.fixture
def stripe_api() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer(stripe_responder) as server:
        yield server


@pytest.fixture
def settings(database_url: str, stripe_api: FakeHTTPServer, inkpass: FakeHTTPServer) -> Settings:
    return make_settings(
        database_url,
        STRIPE_SECRET_KEY=STRIPE_KEY,
        STRIPE_API_URL=stripe_api.url,
        BILLING_PRODUCTS="tentackl_solo=price_solo_sub,tentackl_pack=price_pack",
        INKPASS_INTERNAL_URL=inkpass.url,
    )


def posts(server: FakeHTTPServer, path: str) -> list[Received]:
    return [r for r in server.requests if r.method == "POST" and r.path == path]


async def test_a_checkout_session_carries_product_and_tenant(
    client: AsyncTestClient[Litestar], stripe_api: FakeHTTPServer
) -> None:
    response = await client.post(CHECKOUT, json=BODY, headers=ADMIN)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["id"].startswith("cs_test_")
    assert answer["url"].endswith(answer["id"])
    assert answer["expires_at"] == 1_790_086_400
    [call] = posts(stripe_api, "/v1/checkout/sessions")
    sent = form(call)
    assert sent["mode"] == "subscription"  # price_solo_sub is recurring
    assert sent["line_items[0][price]"] == "price_solo_sub"
    assert sent["line_items[0][quantity]"] == "1"
    assert sent["customer_email"] == "ann@example.com"
    for prefix in ("metadata", "subscription_data[metadata]"):
        assert sent[f"{prefix}[product_type]"] == "tentackl_solo"
        assert sent[f"{prefix}[tenant_id]"] == "acme"
    assert call.headers["authorization"] == f"Bearer {STRIPE_KEY}"
    assert call.headers["idempotency-key"].startswith("mimic-checkout-")
    # One-off prices are payments; each price's mode is asked of Stripe once.
    pack = await client.post(
        CHECKOUT, json={**BODY, "product_type": "tentackl_pack"}, headers=ADMIN
    )
    assert pack.status_code == 201
    assert form(posts(stripe_api, "/v1/checkout/sessions")[1])["mode"] == "payment"
    await client.post(CHECKOUT, json=BODY, headers=ADMIN)
    price_reads = [r.path for r in stripe_api.requests if r.method == "GET"]
    assert sorted(price_reads) == ["/v1/prices/price_pack", "/v1/prices/price_solo_sub"]


async def test_the_idempotency_key_is_passed_on_scoped_by_tenant(
    client: AsyncTestClient[Litestar], stripe_api: FakeHTTPServer
) -> None:
    key = {**ADMIN, "Idempotency-Key": "order-7"}
    await client.post(CHECKOUT, json=BODY, headers=key)
    await client.post(CHECKOUT, json=BODY, headers=key)
    await client.post(CHECKOUT, json={**BODY, "tenant_id": "globex"}, headers=key)
    await client.post(CHECKOUT, json=BODY, headers=ADMIN)
    keys = [r.headers["idempotency-key"] for r in posts(stripe_api, "/v1/checkout/sessions")]
    assert keys[0] == keys[1]  # the same request, the same Stripe key
    assert keys[2] != keys[0]  # another tenant's "order-7" is another order
    assert keys[3] not in keys[:3]  # no header: a fresh key


@pytest.mark.parametrize(
    ("reply", "status", "code", "mentions"),
    [
        (
            Reply(
                status=400,
                body={
                    "error": {
                        "type": "invalid_request_error",
                        "message": "No such price",
                        "param": "line_items[0][price]",
                    }
                },
            ),
            422,
            "stripe_invalid_request",
            "No such price (param: line_items[0][price])",
        ),
        (
            Reply(
                status=402,
                body={"error": {"type": "card_error", "message": "Your card was declined."}},
            ),
            422,
            "card_error",
            "declined",
        ),
        (
            Reply(
                status=401,
                body={
                    "error": {
                        "type": "invalid_request_error",
                        "message": "Invalid API Key provided: sk_test_****6789",
                    }
                },
            ),
            502,
            "billing_provider_auth",
            "STRIPE_SECRET_KEY",
        ),
        (
            Reply(
                status=403,
                body={"error": {"type": "invalid_request_error", "message": "forbidden"}},
            ),
            502,
            "billing_provider_auth",
            "STRIPE_SECRET_KEY",
        ),
        (
            Reply(status=429, body={"error": {"type": "invalid_request_error", "message": "rate"}}),
            503,
            "billing_provider_unavailable",
            "Idempotency-Key",
        ),
        (
            Reply(status=500, body={"error": {"type": "api_error", "message": "boom"}}),
            502,
            "billing_provider_error",
            "Stripe",
        ),
    ],
    ids=["invalid", "card", "auth", "permission", "rate-limit", "server-error"],
)
async def test_stripe_errors_become_mimics_error_body(
    client: AsyncTestClient[Litestar],
    stripe_api: FakeHTTPServer,
    caplog: pytest.LogCaptureFixture,
    reply: Reply,
    status: int,
    code: str,
    mentions: str,
) -> None:
    # A first session has Mimic learn the price's mode; the next call goes straight to the
    # session, which answers with the error.
    assert (await client.post(CHECKOUT, json=BODY, headers=ADMIN)).status_code == 201
    stripe_api.script(reply)
    with caplog.at_level(logging.DEBUG):
        response = await client.post(CHECKOUT, json=BODY, headers=ADMIN)
    assert response.status_code == status
    assert response.json()["error"] == code
    assert mentions in response.json()["detail"]
    if status == 503:
        assert response.headers["retry-after"] == "5"
    assert STRIPE_KEY not in response.text
    assert STRIPE_KEY not in caplog.text


async def test_an_unreachable_stripe_is_503_with_retry_after(database_url: str) -> None:
    settings = make_settings(
        database_url,
        STRIPE_SECRET_KEY=STRIPE_KEY,
        STRIPE_API_URL=f"http://127.0.0.1:{free_port()}",
        BILLING_PRODUCTS="tentackl_solo=price_solo_sub",
    )
    async with client_for(create_app(settings)) as client:
        response = await client.post(CHECKOUT, json=BODY, headers=ADMIN)
    assert response.status_code == 503
    assert response.json()["error"] == "billing_provider_unavailable"
    assert "retry-after" in response.headers


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"product_type": "nope"}, "unknown_product"),
        ({"customer_id": "cus_1"}, "customer_required"),  # both
        ({"customer_email": None}, "customer_required"),  # neither
        ({"success_url": "/relative"}, "invalid_url"),
        ({"cancel_url": "ftp://example.com"}, "invalid_url"),
        ({"metadata": {"tenant_id": "other"}}, "reserved_metadata"),
    ],
)
async def test_bad_requests_are_422_and_reach_no_stripe(
    client: AsyncTestClient[Litestar],
    stripe_api: FakeHTTPServer,
    change: dict[str, Any],
    code: str,
) -> None:
    body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
    response = await client.post(CHECKOUT, json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == code
    assert stripe_api.requests == []


async def test_localhost_urls_only_in_dev(database_url: str, stripe_api: FakeHTTPServer) -> None:
    local = {**BODY, "success_url": "http://localhost:3000/done"}
    common = {
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_API_URL": stripe_api.url,
        "BILLING_PRODUCTS": "tentackl_solo=price_solo_sub",
    }
    dev = make_settings(database_url, **common)
    production = make_settings(
        database_url, MIMIC_ENV="production", EMAIL_PROVIDER="resend", **common
    )
    async with client_for(create_app(dev)) as client:
        assert (await client.post(CHECKOUT, json=local, headers=ADMIN)).status_code == 201
    async with client_for(create_app(production)) as client:
        refused = await client.post(CHECKOUT, json=local, headers=ADMIN)
    assert refused.status_code == 422
    assert refused.json()["error"] == "invalid_url"


async def test_without_a_stripe_key_billing_is_503_and_the_rest_runs(database_url: str) -> None:
    settings = make_settings(database_url, STRIPE_SECRET_KEY="")
    async with client_for(create_app(settings)) as client:
        refused = await client.post(CHECKOUT, json=BODY, headers=ADMIN)
        templates = await client.get("/api/v1/templates", headers=ADMIN)
    assert refused.status_code == 503
    assert refused.json()["error"] == "not_configured"
    assert templates.status_code == 200


async def test_products_portal_and_tenant_keys(
    client: AsyncTestClient[Litestar], settings: Settings, stripe_api: FakeHTTPServer
) -> None:
    listed = await client.get("/api/v1/billing/products", headers=ADMIN)
    assert listed.json() == [
        {"product_type": "tentackl_solo", "price_id": "price_solo_sub"},
        {"product_type": "tentackl_pack", "price_id": "price_pack"},
    ]
    portal = {"customer_id": "cus_123", "return_url": "https://app.example.com/billing"}
    opened = await client.post(PORTAL, json=portal, headers=ADMIN)
    assert opened.status_code == 201
    assert opened.json() == {"url": "https://billing.stripe.com/p/session/test_123"}
    assert form(posts(stripe_api, "/v1/billing_portal/sessions")[0]) == {
        "customer": "cus_123",
        "return_url": "https://app.example.com/billing",
    }

    async with open_deps(settings) as deps:
        _, key = await create_key(deps.db, "acme", by="test")
    acme = {"X-API-Key": key}
    assert (await client.post(PORTAL, json=portal, headers=acme)).status_code == 403
    other = await client.post(CHECKOUT, json={**BODY, "tenant_id": "globex"}, headers=acme)
    assert other.status_code == 403
    named = await client.post(
        CHECKOUT,
        json={**BODY, "tenant_id": None, "customer_id": "cus_9", "customer_email": None},
        headers=acme,
    )
    assert named.status_code == 403
    assert named.json()["error"] == "customer_id_admin_only"
    own = await client.post(
        CHECKOUT, json={k: v for k, v in BODY.items() if k != "tenant_id"}, headers=acme
    )
    assert own.status_code == 201
    assert form(posts(stripe_api, "/v1/checkout/sessions")[-1])["metadata[tenant_id]"] == "acme"


async def test_checkout_to_webhook_to_inkpass_round_trip(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    stripe_api: FakeHTTPServer,
    inkpass: FakeHTTPServer,
    db: asyncpg.Connection,
) -> None:
    created = await client.post(CHECKOUT, json=BODY, headers=ADMIN)
    session_id = created.json()["id"]
    sent = form(posts(stripe_api, "/v1/checkout/sessions")[0])
    metadata = {k[9:-1]: v for k, v in sent.items() if re.match(r"metadata\[", k)}
    # What Stripe sends when the customer has paid: the session Mimic created.
    import json

    event = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "type": "checkout.session.completed",
            "created": 1_790_000_000,
            "livemode": False,
            "data": {
                "object": {
                    "id": session_id,
                    "object": "checkout.session",
                    "mode": "subscription",
                    "customer": "cus_new",
                    "customer_email": sent["customer_email"],
                    "subscription": "sub_new",
                    "status": "complete",
                    "metadata": metadata,
                }
            },
        }
    ).encode()
    hook = await client.post(
        "/api/v1/gateway/webhooks/stripe", content=event, headers=stripe_headers(event)
    )
    assert hook.status_code == 200
    async with running_worker(settings):
        await inkpass.wait_for_requests(1)
    [call] = inkpass.requests
    assert call.path == "/internal/billing/subscription-created"
    body = call.json()
    assert body["object_id"] == session_id
    assert body["product_type"] == "tentackl_solo"
    assert body["metadata"]["tenant_id"] == "acme"
    assert body["subscription_id"] == "sub_new"


def test_a_test_mode_key_in_production_is_warned_about(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    common = {"STRIPE_SECRET_KEY": STRIPE_KEY, "EMAIL_PROVIDER": "resend"}
    with caplog.at_level(logging.WARNING):
        create_app(make_settings(database_url, **common))  # dev: test keys are normal
        assert "test-mode key" not in caplog.text
        create_app(make_settings(database_url, MIMIC_ENV="production", **common))
    assert "STRIPE_SECRET_KEY is a test-mode key (sk_test_...) in production" in caplog.text
    assert STRIPE_KEY not in caplog.text


async def test_checkout_and_portal_sessions_are_audited(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    acme = {"X-API-Key": await new_key(settings, "acme")}
    opened = await client.post(CHECKOUT, json=BODY, headers=ADMIN)
    assert opened.status_code == 201
    other = await client.post(CHECKOUT, json={**BODY, "tenant_id": "globex"}, headers=acme)
    assert other.status_code == 403
    unknown = await client.post(CHECKOUT, json={**BODY, "product_type": "nope"}, headers=ADMIN)
    assert unknown.status_code == 422
    portal = {"customer_id": "cus_123", "return_url": "https://app.example.com/billing"}
    assert (await client.post(PORTAL, json=portal, headers=ADMIN)).status_code == 201
    assert (await client.post(PORTAL, json=portal, headers=acme)).status_code == 403

    rows = await db.fetch(
        "SELECT key_id, action, target_ids, outcome, detail FROM audit_log"
        " WHERE action <> 'create_key' ORDER BY id"
    )
    admin_id, acme_id = key_id(ADMIN["X-API-Key"]), key_id(acme["X-API-Key"])
    assert [(r["key_id"], r["action"], r["outcome"]) for r in rows] == [
        (admin_id, "create_checkout_session", "ok"),
        (acme_id, "create_checkout_session", "tenant_mismatch"),
        (admin_id, "create_checkout_session", "unknown_product"),
        (admin_id, "create_portal_session", "ok"),
        (acme_id, "create_portal_session", "admin_key_required"),
    ]
    assert rows[0]["target_ids"] == [opened.json()["id"]]
    assert json.loads(rows[0]["detail"]) == {
        "tenant_id": "acme",
        "product_type": "tentackl_solo",
        "price_id": "price_solo_sub",
        "customer_id": None,
        "customer_email": "ann@example.com",
    }
    assert json.loads(rows[1]["detail"])["tenant_id"] == "globex"  # what the key asked for
    assert [r["target_ids"] for r in rows[3:]] == [["cus_123"], ["cus_123"]]
    everything = str([dict(r) for r in rows])
    assert ADMIN["X-API-Key"] not in everything
    assert acme["X-API-Key"] not in everything
    assert STRIPE_KEY not in everything
