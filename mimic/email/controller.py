"""Internal API for notifications, templates and BYOK credentials (API key required)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, get_args

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import (
    Body,
    FromPath,
    FromQuery,
    HeaderParameter,
    JSONBody,
    Parameter,
    QueryParameter,
)

from mimic.core.audit import audited, audited_refusal
from mimic.core.auth import require_api_key, scope_of
from mimic.core.deps import Deps
from mimic.core.errors import BadRequest, NotFound, error_spec
from mimic.core.keys import check_tenant
from mimic.core.pagination import known_query_only
from mimic.email import repository, suppression, tenants
from mimic.email.credentials import (
    CredentialIn,
    CredentialOut,
    delete_credential,
    get_credential,
    put_credential,
)
from mimic.email.providers import hide_provider_text
from mimic.email.rendering import Templates
from mimic.email.schemas import (
    MAX_BATCH,
    Accepted,
    BatchAccepted,
    BatchIn,
    BatchResult,
    CredentialProvider,
    EmailRequest,
    NotificationOut,
    NotificationStatus,
    Page,
    PreviewIn,
    Rendered,
    TemplateInfo,
)
from mimic.email.submit import submit, submit_many

AUTH_ERRORS = {
    401: error_spec("Missing, unknown or revoked API key"),
}
TENANT_ERRORS = {
    **AUTH_ERRORS,
    403: error_spec("A tenant key naming another tenant"),
}
ERRORS = {
    400: error_spec("Malformed request"),
    **TENANT_ERRORS,
    422: error_spec("Unknown template, missing variable, bad address"),
}
SEND_ERRORS = {
    **ERRORS,
    403: error_spec(
        "A tenant key naming another tenant (tenant_mismatch), giving a from or reply_to at a "
        "domain that is not its own (sender_not_allowed), or with no credential for the "
        "provider and no platform fallback (platform_fallback_not_allowed)"
    ),
    422: error_spec(
        "Unknown template, missing variable, bad address, suppressed recipient, provider not "
        "configured"
    ),
    429: error_spec(
        "Over this key's request rate (rate_limited), or the tenant's daily send quota would "
        "be exceeded (quota_exceeded; nothing stored; Retry-After: until 00:00 UTC)"
    ),
}
ADMIN_ERRORS = {
    **AUTH_ERRORS,
    403: error_spec("A tenant key (admin_key_required)"),
}
SETTINGS_ERRORS = {
    400: error_spec("Bad tenant id"),
    **ADMIN_ERRORS,
}
CREDENTIAL_ERRORS = {
    400: error_spec("Bad tenant id or provider"),
    **TENANT_ERRORS,
    404: error_spec("No credential for this tenant and provider"),
}
PREVIEW_ERRORS = {
    400: error_spec("Malformed request"),
    **AUTH_ERRORS,
    422: error_spec("Unknown template or missing variable"),
}
SEND_EXAMPLE = Example(
    summary="The welcome template (succeeds in dev as is)",
    value={
        "to": "ann@example.com",
        "template": "welcome",
        "data": {"name": "Ann", "login_url": "https://app.example.com/login"},
    },
)
BATCH_EXAMPLE = Example(
    summary="Two welcome emails",
    value={
        "messages": [
            {**SEND_EXAMPLE.value, "idempotency_key": "welcome-ann"},  # type: ignore[dict-item]
            {
                "to": "bob@example.com",
                "template": "welcome",
                "data": {"name": "Bob", "login_url": "https://app.example.com/login"},
            },
        ]
    },
)
PREVIEW_EXAMPLE = Example(
    summary="Render welcome",
    value={"data": {"name": "Ann", "login_url": "https://app.example.com/login"}},
)


class _Internal(Controller):
    """Shared by every internal route: an API key, and the notifications tag."""

    guards = [require_api_key]
    tags = ["notifications"]
    security = [{"apiKey": []}, {"bearer": []}]


class NotificationController(_Internal):
    path = "/api/v1/notifications"

    @post(
        "/email",
        status_code=202,
        summary="Render a template and queue an email",
        description=(
            "Renders at request time (422 names an unknown template, a missing variable or an "
            "invalid address), stores the notification and queues its send in one transaction "
            "(sends arriving together share that transaction and one job). 202 means "
            "committed. `Idempotency-Key` is scoped to the tenant: the same key and body "
            "return the original response (with `Idempotent-Replayed: true`); the same key "
            "with another body is 409. A tenant key sends only from its own domains (`from` "
            "and `reply_to` at a domain of its credentials' `from_email` or of the "
            "`sender_domains` an admin set; else 403 `sender_not_allowed`), and through the "
            "platform's providers only when an admin turned its `platform_fallback` on (else "
            "403 `platform_fallback_not_allowed`). A tenant's `daily_send_quota`, when an admin "
            "set one, counts every send accepted for it in the UTC day; the send that would "
            "exceed it is 429 `quota_exceeded` (`Retry-After` until 00:00 UTC)."
        ),
        responses={**SEND_ERRORS, 409: error_spec("Key reused")},
    )
    async def send_email(
        self,
        data: Annotated[EmailRequest, Body(examples=[SEND_EXAMPLE])],
        deps: NamedDependency[Deps],
        templates: NamedDependency[Templates],
        request: Request[Any, Any, Any],
        idempotency_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", required=False, max_length=255)
        ] = None,
    ) -> Response[Accepted]:
        scope = scope_of(request)
        tenant = scope.tenant(data.tenant_id)
        if tenant != data.tenant_id:
            data = msgspec.structs.replace(data, tenant_id=tenant)
        accepted, replayed = await submit(
            deps, templates, data, idempotency_key, tenant_key=not scope.is_admin
        )
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return Response(accepted, status_code=202, headers=headers)

    @post(
        "/email/batch",
        status_code=202,
        summary=f"Queue up to {MAX_BATCH} emails at once (all or nothing)",
        description=(
            "Every message is validated and rendered first; then all are stored and queued in "
            "one transaction, with one job for all. One invalid message refuses the batch: "
            "nothing is stored, and the answer (the failing message's status and code) names "
            "each failing message by its index, e.g. "
            "`messages[3]: recipient_suppressed: ...`. Each message may carry its own "
            "`idempotency_key` (scoped to its tenant, as the header is for single sends); "
            "a reused key answers with the original id and `replayed: true`. The sender rule "
            "of single sends applies to each message. A batch counts its new messages against "
            "the tenant's `daily_send_quota` all at once: if they would exceed it the whole "
            "batch is 429 `quota_exceeded` and nothing is stored (replayed messages count "
            "nothing)."
        ),
        responses={
            **SEND_ERRORS,
            409: error_spec("A message's key reused with another body"),
        },
    )
    async def send_batch(
        self,
        data: Annotated[BatchIn, Body(examples=[BATCH_EXAMPLE])],
        deps: NamedDependency[Deps],
        templates: NamedDependency[Templates],
        request: Request[Any, Any, Any],
    ) -> BatchAccepted:
        scope = scope_of(request)
        items = []
        for message in data.messages:
            one = message.request()
            tenant = scope.tenant(one.tenant_id)
            if tenant != one.tenant_id:
                one = msgspec.structs.replace(one, tenant_id=tenant)
            items.append((one, message.idempotency_key))
        answers = await submit_many(deps, templates, items, tenant_key=not scope.is_admin)
        return BatchAccepted(
            results=[
                BatchResult(index=i, id=accepted.id, status=accepted.status, replayed=replayed)
                for i, (accepted, replayed) in enumerate(answers)
            ]
        )

    @get(
        "/{notification_id:uuid}",
        summary="A notification with its status timeline",
        description="A tenant key sees only its own tenant's notifications (others are 404).",
        responses={
            400: error_spec("The id is not a uuid"),
            **AUTH_ERRORS,
            404: error_spec("No such notification"),
        },
    )
    async def get_one(
        self,
        notification_id: FromPath[uuid.UUID],
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
    ) -> NotificationOut:
        found = await repository.get_notification(deps.reads, notification_id, primary=deps.db)
        scope = scope_of(request)
        if scope.is_admin:
            return found
        if found.tenant_id != scope.tenant_id:
            raise NotFound(f"no notification {notification_id}")
        found.error = hide_provider_text(found.error)
        for entry in found.timeline:
            entry.detail = hide_provider_text(entry.detail)
        return found

    @get(
        "/",
        summary="Notifications, newest first (keyset pagination)",
        guards=[known_query_only],
        description=(
            "An admin key lists every tenant's (or one tenant's, with `tenant_id`); a tenant "
            "key lists its own tenant's only."
        ),
        responses={400: error_spec("Malformed cursor"), **TENANT_ERRORS},
    )
    async def list_all(
        self,
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
        tenant_id: FromQuery[str | None] = None,
        status: FromQuery[NotificationStatus | None] = None,
        to: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> Page:
        scope = scope_of(request)
        found = await repository.list_notifications(
            deps.reads,
            tenant_id=scope.tenant(tenant_id),
            status=status,
            to=to,
            limit=limit,
            cursor=cursor,
        )
        if not scope.is_admin:
            for item in found.items:
                item.error = hide_provider_text(item.error)
        return found


class TemplateController(_Internal):
    path = "/api/v1/templates"

    @get("/", summary="Every template with the variables it needs", responses=AUTH_ERRORS)
    async def list_templates(self, templates: NamedDependency[Templates]) -> list[TemplateInfo]:
        return [templates.describe(name) for name in templates.names()]

    @post(
        "/{name:str}/preview",
        status_code=200,
        summary="Render a template without sending",
        responses=PREVIEW_ERRORS,
    )
    async def preview(
        self,
        name: Annotated[str, Parameter(examples=[Example(value="welcome")])],
        data: Annotated[PreviewIn, Body(examples=[PREVIEW_EXAMPLE])],
        templates: NamedDependency[Templates],
    ) -> Rendered:
        return templates.render(name, data.data, data.locale)


CREDENTIAL_PROVIDERS: tuple[CredentialProvider, ...] = get_args(CredentialProvider)


def _provider(value: str) -> CredentialProvider:
    for provider in CREDENTIAL_PROVIDERS:
        if value == provider:
            return provider
    raise BadRequest("provider must be smtp, resend or postmark", code="invalid_provider")


class CredentialController(_Internal):
    path = "/api/v1/tenants/{tenant_id:str}/credentials/{provider:str}"
    tags = ["byok"]

    @put(
        "/",
        summary="Store a tenant's provider key (encrypted; never shown again)",
        responses={**ERRORS, 503: error_spec("No encryption key")},
    )
    async def put_cred(
        self,
        tenant_id: FromPath[str],
        provider: FromPath[str],
        data: JSONBody[CredentialIn],
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
    ) -> CredentialOut:
        scope = scope_of(request)
        target = f"{tenant_id}/{provider}"
        async with audited(deps.db, scope.key_id, "put_credential", [target]):
            scope.tenant(tenant_id)  # a refusal is audited too
            return await put_credential(
                deps.db, deps.keyring, check_tenant(tenant_id), _provider(provider), data
            )

    @get(
        "/",
        summary="A tenant's credential: provider, from_email, last 4, times",
        responses=CREDENTIAL_ERRORS,
    )
    async def get_cred(
        self,
        tenant_id: FromPath[str],
        provider: FromPath[str],
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
    ) -> CredentialOut:
        scope = scope_of(request)
        # Reads are many and harmless; a key probing another tenant's is worth a row.
        async with audited_refusal(
            deps.db, scope.key_id, "read_credential", [f"{tenant_id}/{provider}"]
        ):
            scope.tenant(tenant_id)
        return await get_credential(deps.db, check_tenant(tenant_id), _provider(provider))

    @delete(
        "/",
        summary="Remove a tenant's credential",
        responses=CREDENTIAL_ERRORS,
    )
    async def delete_cred(
        self,
        tenant_id: FromPath[str],
        provider: FromPath[str],
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
    ) -> None:
        scope = scope_of(request)
        target = f"{tenant_id}/{provider}"
        async with audited(deps.db, scope.key_id, "delete_credential", [target]):
            scope.tenant(tenant_id)
            await delete_credential(deps.db, check_tenant(tenant_id), _provider(provider))


SETTINGS_EXAMPLE = Example(
    summary="Let acme send from acme.example, not through the platform, 10,000 a day",
    value={
        "sender_domains": ["acme.example"],
        "platform_fallback": False,
        "daily_send_quota": 10_000,
    },
)


class TenantSettingsController(_Internal):
    path = "/api/v1/tenants/{tenant_id:str}/settings"
    tags = ["tenants"]

    @get(
        "/",
        summary="What an admin allows a tenant: sender domains, platform fallback, daily quota",
        description=(
            "A tenant with nothing stored has the defaults (no extra sender domain; platform "
            "fallback on in dev, off in production; no daily send quota), shown with null "
            "timestamps. Admin keys only."
        ),
        responses=SETTINGS_ERRORS,
    )
    async def get_settings(
        self,
        tenant_id: FromPath[str],
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
    ) -> tenants.TenantSettingsOut:
        scope_of(request).require_admin()
        return await tenants.get_settings(
            deps.db, check_tenant(tenant_id), dev=deps.settings.is_dev
        )

    @put(
        "/",
        summary="Set a tenant's sender domains, platform fallback and quota (admin keys only)",
        description=(
            "`sender_domains`: the domains (besides those of its credentials' `from_email`) "
            "the tenant's keys may use in `from` and `reply_to`; exact match, so a subdomain "
            f"is not covered; at most {tenants.MAX_SENDER_DOMAINS}, no wildcard, stored lower "
            "case as IDNA A-labels. `platform_fallback`: may the tenant's keys send through "
            "the platform's providers (as the platform's `EMAIL_FROM`, or from a "
            "`sender_domains` address) when it has no credential for the provider. "
            "`daily_send_quota`: how many emails may be accepted for the tenant per UTC day, "
            "by its keys and by admin keys acting for it (null or omitted: no quota); setting "
            "one counts what was already accepted today. Replaces what was stored (so an "
            "omitted quota removes it); every change (and every refusal) is written to the "
            "audit log."
        ),
        responses={
            **SETTINGS_ERRORS,
            400: error_spec("Malformed body (e.g. more than 50 domains) or bad tenant id"),
            422: error_spec("A sender domain that is not a domain name, or a wildcard"),
        },
    )
    async def put_settings(
        self,
        tenant_id: FromPath[str],
        data: Annotated[tenants.TenantSettingsIn, Body(examples=[SETTINGS_EXAMPLE])],
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
    ) -> tenants.TenantSettingsOut:
        scope = scope_of(request)
        async with audited(deps.db, scope.key_id, "put_tenant_settings", [tenant_id]) as entry:
            scope.require_admin()  # a tenant key's attempt is audited too
            before, after = await tenants.put_settings(
                deps.db, check_tenant(tenant_id), data, dev=deps.settings.is_dev
            )
            entry.detail = {
                "before": before,
                "after": {
                    "sender_domains": after.sender_domains,
                    "platform_fallback": after.platform_fallback,
                    "daily_send_quota": after.daily_send_quota,
                },
            }
        return after


class SuppressionIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: str
    tenant_id: str | None = None
    detail: str | None = None


class SuppressionController(_Internal):
    path = "/api/v1/suppressions"
    tags = ["suppressions"]

    @get(
        "/",
        summary="A tenant's suppressed addresses, newest first (keyset pagination)",
        guards=[known_query_only],
        description=(
            "Without `tenant_id` an admin key sees the platform's list; a tenant key always "
            "sees its own. `email` finds one address (the domain compares case-insensitively, "
            "the local part exactly)."
        ),
        responses={400: error_spec("Malformed cursor"), **TENANT_ERRORS},
    )
    async def list_suppressions(
        self,
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
        tenant_id: FromQuery[str | None] = None,
        email: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> suppression.SuppressionPage:
        tenant = scope_of(request).tenant(tenant_id)
        return await suppression.list_page(
            deps.db, tenant, email_filter=email, limit=limit, cursor=cursor
        )

    @post(
        "/",
        status_code=201,
        summary="Suppress an address by hand (reason: manual)",
        responses={**ERRORS},
    )
    async def add_suppression(
        self,
        data: Annotated[
            SuppressionIn,
            Body(examples=[Example(value={"email": "ann@example.com", "detail": "asked"})]),
        ],
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
    ) -> suppression.Suppression:
        scope = scope_of(request)
        async with audited(deps.db, scope.key_id, "add_suppression", [data.email]):
            tenant = scope.tenant(data.tenant_id)
            return await suppression.add_by_hand(deps.db, tenant, data.email, data.detail)

    @delete(
        "/{email:str}",
        summary="Take an address off a tenant's list (a complaint needs force=true)",
        description="The removal is written to the audit log, with the reason it had.",
        responses={
            400: error_spec("Malformed query"),
            **TENANT_ERRORS,
            404: error_spec("Not suppressed for this tenant"),
            409: error_spec("A complaint, and force is not true"),
        },
    )
    async def remove_suppression(
        self,
        email: FromPath[str],
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
        tenant_id: FromQuery[str | None] = None,
        force: FromQuery[bool] = False,
    ) -> None:
        scope = scope_of(request)
        async with audited(deps.db, scope.key_id, "remove_suppression", [email]) as entry:
            tenant = scope.tenant(tenant_id)
            removed = await suppression.remove(deps.db, tenant, email, force=force)
            entry.detail = {"tenant_id": tenant, "reason": removed.reason, "force": force}


CONTROLLERS = [
    NotificationController,
    TemplateController,
    CredentialController,
    TenantSettingsController,
    SuppressionController,
]
