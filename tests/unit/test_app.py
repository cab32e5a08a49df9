"""The wiring: the HTTP surface is exactly the documented one, whatever the code layout."""

from __future__ import annotations

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
    ("/api/v1/notifications", "get"),
    ("/api/v1/notifications/email", "post"),
    ("/api/v1/notifications/{notification_id}", "get"),
    ("/api/v1/templates", "get"),
    ("/api/v1/templates/{name}/preview", "post"),
    ("/api/v1/tenants/{tenant_id}/credentials/{provider}", "delete"),
    ("/api/v1/tenants/{tenant_id}/credentials/{provider}", "get"),
    ("/api/v1/tenants/{tenant_id}/credentials/{provider}", "put"),
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
            "MIMIC_SERVICE_API_KEY": "svc",
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
