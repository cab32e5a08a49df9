"""The wiring: the HTTP surface is exactly the documented one, whatever the code layout."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

from mimic.app import create_app
from mimic.core.settings import Settings

EXPECTED = {
    ("/api/v1/gateway/webhooks/postmark", "post"),
    ("/api/v1/gateway/webhooks/resend", "post"),
    ("/api/v1/gateway/webhooks/stripe", "post"),
    ("/api/v1/gateway/webhooks/events", "get"),
    ("/api/v1/gateway/webhooks/events/{event_id}", "get"),
    ("/api/v1/gateway/webhooks/events/{event_id}/replay", "post"),
    ("/api/v1/gateway/webhooks/deliveries", "get"),
    ("/api/v1/gateway/webhooks/deliveries/{delivery_id}/retry", "post"),
    ("/api/v1/gateway/webhooks/deliveries/retry", "post"),
    ("/api/v1/gateway/webhooks/deliveries/retry/{bulk_id}", "get"),
    ("/api/v1/gateway/destinations", "get"),
    ("/api/v1/gateway/destinations", "post"),
    ("/api/v1/gateway/destinations/{name}", "get"),
    ("/api/v1/gateway/destinations/{name}", "patch"),
    ("/api/v1/gateway/destinations/{name}", "delete"),
    ("/api/v1/gateway/destinations/{name}/pause", "post"),
    ("/api/v1/gateway/destinations/{name}/resume", "post"),
    ("/api/v1/gateway/destinations/{name}/disable", "post"),
    ("/api/v1/gateway/destinations/{name}/rotate-secret", "post"),
    ("/api/v1/gateway/routes", "get"),
    ("/api/v1/gateway/routes", "post"),
    ("/api/v1/gateway/routes/test", "post"),
    ("/api/v1/gateway/routes/{route_id}", "get"),
    ("/api/v1/gateway/routes/{route_id}", "patch"),
    ("/api/v1/gateway/routes/{route_id}", "delete"),
    ("/api/v1/notifications", "get"),
    ("/api/v1/notifications/email", "post"),
    ("/api/v1/notifications/email/batch", "post"),
    ("/api/v1/notifications/{notification_id}", "get"),
    ("/api/v1/templates", "get"),
    ("/api/v1/billing/checkout-sessions", "post"),
    ("/api/v1/billing/portal-sessions", "post"),
    ("/api/v1/billing/products", "get"),
    ("/api/v1/suppressions", "get"),
    ("/api/v1/suppressions", "post"),
    ("/api/v1/suppressions/{email}", "delete"),
    ("/api/v1/templates/{name}/preview", "post"),
    ("/api/v1/tenants/{tenant_id}/credentials/{provider}", "delete"),
    ("/api/v1/tenants/{tenant_id}/credentials/{provider}", "get"),
    ("/api/v1/tenants/{tenant_id}/credentials/{provider}", "put"),
    ("/api/v1/tenants/{tenant_id}/settings", "get"),
    ("/api/v1/tenants/{tenant_id}/settings", "put"),
    ("/healthz", "get"),
    ("/metrics", "get"),
    ("/readyz", "get"),
}
DEV_ONLY = {("/api/v1/gateway/webhooks/stripe/test", "post")}


def documented(env: str) -> set[tuple[str, str]]:
    settings = Settings.from_env(
        {
            "MIMIC_ENV": env,
            "DATABASE_URL": "postgresql://nobody@127.0.0.1/never-connected",
            "INKPASS_INTERNAL_URL": "http://inkpass",
            "STRIPE_WEBHOOK_SECRET": "whsec_x",
            "RESEND_WEBHOOK_SECRET": "whsec_eA==",
            "MIMIC_SERVICE_API_KEY": "s" * 32,
            "EMAIL_PROVIDER": "smtp",
            "MIMIC_ENCRYPTION_KEYS": "k1:" + "A" * 43 + "=",
        }
    )
    schema = create_app(settings).openapi_schema.to_schema()
    return {
        (path, method)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }


def test_the_api_surface_is_the_documented_one() -> None:
    assert documented("dev") == EXPECTED | DEV_ONLY
    assert documented("production") == EXPECTED


def _document() -> dict[str, Any]:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://nobody@127.0.0.1/never"})
    schema: dict[str, Any] = create_app(settings).openapi_schema.to_schema()
    return schema


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "delete"}
    ]


def test_every_documented_error_is_mimics_error_body() -> None:
    doc = _document()
    error_body = doc["components"]["schemas"]["ErrorBody"]
    assert set(error_body["required"]) == {"error", "detail"}
    for path, method, op in _operations(doc):
        for status, response in op["responses"].items():
            if int(status) < 400 or path == "/readyz":  # readiness answers its own Health body
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, status)


def test_every_keyed_route_documents_401_and_tags_are_described() -> None:
    doc = _document()
    for path, method, op in _operations(doc):
        if op.get("security"):
            assert "401" in op["responses"], (path, method)
        if "{" in path and path.startswith("/api/v1/") and method == "get":
            # A tenant's settings always exist: the defaults until an admin stores some.
            assert "404" in op["responses"] or path.endswith("/settings"), (path, method)
    described = {tag["name"]: tag.get("description") for tag in doc["tags"]}
    used = {tag for _, _, op in _operations(doc) for tag in op.get("tags", [])}
    assert used <= set(described)
    assert all(described.values())
    byok = {p for p, _, op in _operations(doc) if op.get("tags") == ["byok"]}
    assert byok == {"/api/v1/tenants/{tenant_id}/credentials/{provider}"}
    assert "Postmark" in doc["info"]["description"]


def test_examples_are_real_requests() -> None:
    doc = _document()
    send = doc["paths"]["/api/v1/notifications/email"]["post"]["requestBody"]["content"]
    value = send["application/json"]["schema"]["examples"][0]
    assert value["template"] == "welcome"
    assert set(value["data"]) == {"name", "login_url"}  # what welcome needs, nothing random
    stripe = doc["paths"]["/api/v1/gateway/webhooks/stripe/test"]["post"]["requestBody"]
    assert stripe["content"]["application/json"]["example"]["type"].startswith("customer.")


def test_the_documented_surface_is_the_served_one() -> None:
    """The webhook routes are ASGI routes whose operations are written by hand: each
    documented path is routed, and the documentation lists every route."""
    settings = Settings.from_env({"DATABASE_URL": "postgresql://nobody@127.0.0.1/never"})
    app = create_app(settings)
    routed = {route.path_format for route in app.routes}
    paths = {path for path, _ in documented("dev")}
    assert paths <= routed
    assert {p for p in routed if p.startswith("/api/") or p in {"/healthz", "/readyz"}} <= paths


def test_building_the_app_and_its_document_stays_light() -> None:
    """Generated OpenAPI examples import polyfactory and Faker (about 60 MB of peak memory):
    the document is built without them, and a fresh process stays well under 150 MB."""
    script = (
        "import sys\n"
        "from mimic.app import create_app\n"
        "from mimic.core.settings import Settings\n"
        "app = create_app(Settings.from_env({'DATABASE_URL': 'postgresql://x@127.0.0.1/x'}))\n"
        "app.openapi_schema.to_schema()\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print('polyfactory' in sys.modules, int(peak.split()[1]) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    imported, peak_mb = done.stdout.split()
    assert imported == "False"
    # About 87 MB today; polyfactory and Faker would add about 60. The bound leaves room for
    # library updates and still catches them (memory does not grow with machine load).
    assert int(peak_mb) < 150, f"peak RSS {peak_mb} MB: did generated examples come back?"


def test_every_reference_in_the_document_resolves() -> None:
    """The webhook operations are written by hand: their $refs must name real components."""
    doc = _document()
    text = json.dumps(doc)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
    assert refs, "no references found: the check is not looking at the document"
    assert refs <= set(doc["components"]["schemas"])
    operation_ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(operation_ids) == len(set(operation_ids))
    assert "ApiV1GatewayWebhooksStripeStripeWebhook" in operation_ids


def test_tenant_settings_and_the_sender_rule_are_documented() -> None:
    doc = _document()
    schemas = doc["components"]["schemas"]
    settings = doc["paths"]["/api/v1/tenants/{tenant_id}/settings"]
    body = settings["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["allOf"] == [{"$ref": "#/components/schemas/TenantSettingsIn"}]
    given = schemas["TenantSettingsIn"]
    assert set(given["required"]) == {"sender_domains", "platform_fallback"}
    assert given["properties"]["sender_domains"]["maxItems"] == 50
    assert given["properties"]["platform_fallback"] == {"type": "boolean"}
    for method in ("get", "put"):
        answer = settings[method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer == {"$ref": "#/components/schemas/TenantSettingsOut"}
        assert "admin_key_required" in settings[method]["responses"]["403"]["description"]
    assert "422" in settings["put"]["responses"]
    for path in ("/api/v1/notifications/email", "/api/v1/notifications/email/batch"):
        refused = doc["paths"][path]["post"]["responses"]["403"]["description"]
        assert "sender_not_allowed" in refused, path
        assert "platform_fallback_not_allowed" in refused, path


def test_every_keyed_route_documents_its_429_with_retry_after() -> None:
    """The per-key request rate guards every route that takes a key, and only those; a send
    also documents its tenant's daily quota."""
    doc = _document()
    keyed = [(path, method, op) for path, method, op in _operations(doc) if op.get("security")]
    assert len(keyed) > 20
    for path, method, op in keyed:
        limited = op["responses"]["429"]
        assert "rate_limited" in limited["description"], (path, method)
        assert limited["headers"]["Retry-After"]["schema"]["type"] == "integer", (path, method)
    for path in ("/api/v1/notifications/email", "/api/v1/notifications/email/batch"):
        assert "quota_exceeded" in doc["paths"][path]["post"]["responses"]["429"]["description"]
    unkeyed = {path for path, _, op in _operations(doc) if not op.get("security")}
    assert {"/healthz", "/readyz", "/metrics", "/api/v1/gateway/webhooks/stripe"} <= unkeyed
    for path, _, op in _operations(doc):
        if path in unkeyed:
            assert "429" not in op["responses"], path
    quota = doc["components"]["schemas"]["TenantSettingsIn"]["properties"]["daily_send_quota"]
    assert {"type": "integer"} in quota["oneOf"]
    assert {"type": "null"} in quota["oneOf"]
