"""Billing routes: Stripe Checkout and Customer Portal sessions, and the product list."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import Body, HeaderParameter

from mimic.billing.checkout import (
    CheckoutIn,
    CheckoutOut,
    PortalIn,
    PortalOut,
    Product,
    create_checkout,
    create_portal,
    products,
)
from mimic.core.audit import audited
from mimic.core.auth import require_api_key, scope_of
from mimic.core.deps import Deps
from mimic.core.errors import Forbidden, error_spec
from mimic.core.keys import check_tenant

IdempotencyKey = Annotated[
    str | None, HeaderParameter(name="Idempotency-Key", required=False, max_length=255)
]
ERRORS = {
    400: error_spec("Malformed request"),
    401: error_spec("Missing, unknown or revoked API key"),
    403: error_spec("A key acting outside its scope"),
    422: error_spec("Unknown product, bad URL or customer, or Stripe refused the request"),
    502: error_spec("Stripe refused Mimic's key, or failed"),
    503: error_spec("STRIPE_SECRET_KEY unset, or Stripe busy or unreachable"),
}
CHECKOUT_EXAMPLE = Example(
    summary="A subscription for one tenant",
    value={
        "product_type": "tentackl_solo",
        "customer_email": "ann@example.com",
        "success_url": "https://app.example.com/billing/done",
        "cancel_url": "https://app.example.com/billing",
        "tenant_id": "acme",
    },
)


class BillingController(Controller):
    path = "/api/v1/billing"
    guards = [require_api_key]
    tags = ["billing"]
    security = [{"apiKey": []}, {"bearer": []}]

    @post(
        "/checkout-sessions",
        status_code=201,
        summary="Start a Stripe Checkout Session for a configured product",
        description=(
            "`product_type` maps to a Stripe price through BILLING_PRODUCTS. The session "
            "carries `metadata.product_type` and `metadata.tenant_id` (also in "
            "`subscription_data.metadata`), so the webhooks that follow reach inkpass with "
            "them. `Idempotency-Key` (scoped to the tenant) is passed on to Stripe."
        ),
        responses=ERRORS,
    )
    async def checkout(
        self,
        data: Annotated[CheckoutIn, Body(examples=[CHECKOUT_EXAMPLE])],
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKey = None,
    ) -> CheckoutOut:
        scope = scope_of(request)
        # Who asked for which customer and price, and how it ended (refusals too).
        async with audited(deps.db, scope.key_id, "create_checkout_session", []) as entry:
            entry.detail.update(
                tenant_id=data.tenant_id or scope.tenant_id,
                product_type=data.product_type,
                price_id=dict(deps.settings.billing.products).get(data.product_type),
                customer_id=data.customer_id,
                customer_email=data.customer_email,
            )
            tenant = scope.tenant(data.tenant_id)
            if tenant is not None:
                check_tenant(tenant)
            if not scope.is_admin and data.customer_id is not None:
                # Mimic cannot tell whose customer a cus_ id is: a tenant key names its
                # customer by email, and Stripe creates or finds it.
                raise Forbidden(
                    "a tenant key cannot name a Stripe customer_id; use customer_email",
                    code="customer_id_admin_only",
                )
            session = await create_checkout(deps.settings, data, tenant, idempotency_key)
            entry.targets = [session.id]
        return session

    @post(
        "/portal-sessions",
        status_code=201,
        summary="A Stripe Customer Portal link for a customer (admin keys)",
        description=(
            "Admin keys only: Mimic cannot tell which tenant a Stripe customer belongs to."
        ),
        responses=ERRORS,
    )
    async def portal(
        self,
        data: Annotated[
            PortalIn,
            Body(
                examples=[
                    Example(
                        value={
                            "customer_id": "cus_123",
                            "return_url": "https://app.example.com/billing",
                        }
                    )
                ]
            ),
        ],
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKey = None,
    ) -> PortalOut:
        scope = scope_of(request)
        target = [data.customer_id]
        async with audited(deps.db, scope.key_id, "create_portal_session", target):
            # In the handler rather than a guard, so a tenant key's attempt is audited.
            scope.require_admin()
            return await create_portal(deps.settings, data, None, idempotency_key)

    @get(
        "/products",
        summary="The configured product types and their Stripe price ids",
        responses={401: ERRORS[401]},
    )
    async def list_products(self, deps: NamedDependency[Deps]) -> list[Product]:
        return products(deps.settings.billing)
