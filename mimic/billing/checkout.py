"""Stripe Checkout and Customer Portal sessions: the start of the billing round trip.

A Checkout Session carries ``metadata.product_type`` and ``metadata.tenant_id`` (and the same
in ``subscription_data.metadata``), so the ``checkout.session.completed`` and later
``customer.subscription.*`` events the gateway routes to inkpass say which product and tenant
they are about. Calls go through the ``stripe`` library's ``StripeClient``, one per key.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import urllib.parse
import uuid
from typing import Annotated, Any, Literal

import msgspec
import stripe

from mimic.core.errors import BadGateway, MimicError, ServiceUnavailable, Unprocessable
from mimic.core.settings import BillingSettings, Settings

logger = logging.getLogger(__name__)

#: Metadata names Mimic sets itself on every session.
RESERVED_METADATA = ("product_type", "tenant_id")

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
MetadataValue = Annotated[str, msgspec.Meta(max_length=500)]


class CheckoutIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    product_type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    success_url: Url
    cancel_url: Url
    customer_email: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    customer_id: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    tenant_id: str | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], msgspec.Meta(max_length=40)] = {}
    client_reference_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    quantity: Annotated[int, msgspec.Meta(ge=1, le=999)] = 1


class CheckoutOut(msgspec.Struct, kw_only=True):
    id: str
    url: str | None
    expires_at: int | None


class PortalIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    customer_id: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    return_url: Url


class PortalOut(msgspec.Struct, kw_only=True):
    url: str


class Product(msgspec.Struct, kw_only=True):
    product_type: str
    price_id: str


def products(settings: BillingSettings) -> list[Product]:
    return [Product(product_type=name, price_id=price) for name, price in settings.products]


@functools.lru_cache(maxsize=32)
def _client(key: str, api_url: str, timeout: float) -> stripe.StripeClient:
    """One client per key (never the module-global ``stripe.api_key``)."""
    return stripe.StripeClient(
        key,
        base_addresses={"api": api_url},
        http_client=stripe.HTTPXClient(timeout=timeout),
        max_network_retries=0,  # the caller retries, with the same Idempotency-Key
    )


def client_for(settings: Settings) -> stripe.StripeClient:
    billing = settings.billing
    if billing.stripe_secret_key is None:
        raise ServiceUnavailable(
            "billing is not configured: set STRIPE_SECRET_KEY", code="not_configured"
        )
    return _client(
        billing.stripe_secret_key.get(), billing.stripe_api_url, billing.stripe_timeout_seconds
    )


def check_url(value: str, field: str, *, dev: bool) -> str:
    parts = urllib.parse.urlsplit(value)
    local = parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1")
    if not parts.netloc or not (parts.scheme == "https" or (dev and local)):
        allowed = "an absolute https:// URL" + (" (or http://localhost in dev)" if dev else "")
        raise Unprocessable(f"{field} must be {allowed}", code="invalid_url")
    return value


def idempotency_key(tenant_id: str | None, given: str | None, what: str) -> str:
    """Stripe's idempotency key: the caller's, scoped by tenant, or a fresh one."""
    if given is None:
        return f"mimic-{what}-{uuid.uuid4()}"
    digest = hashlib.sha256(f"{tenant_id or ''}\0{given}".encode()).hexdigest()
    return f"mimic-{what}-{digest}"


def translate(exc: stripe.StripeError) -> MimicError:
    """Stripe's errors as Mimic's error body. A key is never echoed."""
    message = exc.user_message or (exc.error.message if exc.error else None) or "Stripe error"
    if isinstance(exc, stripe.CardError | stripe.InvalidRequestError):
        param = exc.error.param if exc.error else None
        code = "card_error" if isinstance(exc, stripe.CardError) else "stripe_invalid_request"
        return Unprocessable(message + (f" (param: {param})" if param else ""), code=code)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        logger.error("Stripe refused Mimic's key (%s); check STRIPE_SECRET_KEY", type(exc).__name__)
        return BadGateway(
            "Stripe refused the billing key; the operator must check STRIPE_SECRET_KEY",
            code="billing_provider_auth",
        )
    if isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError):
        logger.warning("Stripe unavailable: %s", type(exc).__name__)
        return ServiceUnavailable(
            "Stripe is busy or unreachable; retry with the same Idempotency-Key",
            code="billing_provider_unavailable",
            headers={"Retry-After": "5"},
        )
    logger.error("Stripe error: %s (HTTP %s)", type(exc).__name__, exc.http_status)
    return BadGateway("Stripe failed to answer", code="billing_provider_error")


_modes: dict[tuple[str, str], Literal["subscription", "payment"]] = {}


async def mode_of(client: stripe.StripeClient, key: str, price_id: str) -> str:
    """``subscription`` for a recurring price, ``payment`` otherwise: asked once per price."""
    found = _modes.get((key, price_id))
    if found is None:
        price = await client.v1.prices.retrieve_async(price_id)
        found = _modes[(key, price_id)] = "subscription" if price.type == "recurring" else "payment"
    return found


async def create_checkout(
    settings: Settings, body: CheckoutIn, tenant_id: str | None, given_key: str | None
) -> CheckoutOut:
    client = client_for(settings)  # 503 first: nothing else matters without a key
    prices = dict(settings.billing.products)
    price = prices.get(body.product_type)
    if price is None:
        known = ", ".join(sorted(prices)) or "none configured (BILLING_PRODUCTS)"
        raise Unprocessable(
            f"unknown product_type {body.product_type!r}; known: {known}", code="unknown_product"
        )
    if (body.customer_email is None) == (body.customer_id is None):
        raise Unprocessable(
            "give exactly one of customer_email or customer_id", code="customer_required"
        )
    reserved = sorted(set(body.metadata) & set(RESERVED_METADATA))
    if reserved:
        raise Unprocessable(
            f"metadata: {', '.join(reserved)} are set by Mimic", code="reserved_metadata"
        )
    check_url(body.success_url, "success_url", dev=settings.is_dev)
    check_url(body.cancel_url, "cancel_url", dev=settings.is_dev)
    metadata = {**body.metadata, "product_type": body.product_type}
    if tenant_id is not None:
        metadata["tenant_id"] = tenant_id
    try:
        mode = await mode_of(client, settings.billing.stripe_secret_key.get(), price)  # type: ignore[union-attr]
        params: dict[str, Any] = {
            "mode": mode,
            "line_items": [{"price": price, "quantity": body.quantity}],
            "success_url": body.success_url,
            "cancel_url": body.cancel_url,
            "metadata": metadata,
        }
        if mode == "subscription":
            params["subscription_data"] = {"metadata": metadata}
        else:
            params["payment_intent_data"] = {"metadata": metadata}
        if body.customer_id is not None:
            params["customer"] = body.customer_id
        else:
            params["customer_email"] = body.customer_email
        if body.client_reference_id is not None:
            params["client_reference_id"] = body.client_reference_id
        session = await client.v1.checkout.sessions.create_async(
            params,  # type: ignore[arg-type]
            {"idempotency_key": idempotency_key(tenant_id, given_key, "checkout")},
        )
    except stripe.StripeError as exc:
        raise translate(exc) from None
    found = session.to_dict()
    return CheckoutOut(
        id=str(found.get("id")), url=found.get("url"), expires_at=found.get("expires_at")
    )


async def create_portal(
    settings: Settings, body: PortalIn, tenant_id: str | None, given_key: str | None
) -> PortalOut:
    client = client_for(settings)
    check_url(body.return_url, "return_url", dev=settings.is_dev)
    try:
        session = await client.v1.billing_portal.sessions.create_async(
            {"customer": body.customer_id, "return_url": body.return_url},
            {"idempotency_key": idempotency_key(tenant_id, given_key, "portal")},
        )
    except stripe.StripeError as exc:
        raise translate(exc) from None
    return PortalOut(url=str(session.to_dict().get("url")))
