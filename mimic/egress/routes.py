"""Internal API for notifications, templates and BYOK credentials (API key required)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Response, Router, delete, get, post, put
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from mimic.auth import require_api_key
from mimic.deps import Deps
from mimic.egress.credentials import (
    CredentialIn,
    CredentialOut,
    CredentialProvider,
    delete_credential,
    get_credential,
    put_credential,
)
from mimic.egress.store import (
    Accepted,
    EmailRequest,
    NotificationOut,
    Page,
    Provider,
    Status,
    check_recipients,
    check_tenant,
    create_notification,
    get_notification,
    list_notifications,
    queries,
    replay,
)
from mimic.egress.templates import Rendered, TemplateInfo, Templates
from mimic.errors import BadRequest, ErrorBody, Unprocessable
from mimic.settings import Settings


class PreviewIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    locale: str | None = None


ERRORS = {
    400: ResponseSpec(ErrorBody, description="Malformed request"),
    401: ResponseSpec(ErrorBody, description="Missing or wrong API key"),
    422: ResponseSpec(ErrorBody, description="Unknown template, missing variable, bad address"),
}


def platform_has(settings: Settings, provider: Provider) -> bool:
    return {
        "dev": True,
        "smtp": settings.smtp_host is not None,
        "resend": settings.resend_api_key is not None,
        "postmark": settings.postmark_server_token is not None,
    }[provider]


async def choose_provider(deps: Deps, request: EmailRequest) -> tuple[Provider, str | None]:
    """Provider and tenant sender: explicit > tenant's latest credential > EMAIL_PROVIDER."""
    if request.tenant_id is not None:
        # One query: the tenant's credential for the asked provider, or its latest one.
        row = await deps.db.fetchrow(
            queries["tenant_credential"], request.tenant_id, request.provider
        )
        if row is not None:
            return row["provider"], row["from_email"]
    provider: Provider = request.provider or deps.settings.email_provider
    if not platform_has(deps.settings, provider):
        raise Unprocessable(
            f"provider {provider!r} has no credentials for this tenant or the platform",
            code="provider_not_configured",
        )
    return provider, None


def routes(settings: Settings) -> list[Router]:
    templates = Templates()

    @post(
        "/notifications/email",
        status_code=202,
        summary="Render a template and queue an email",
        description=(
            "Renders at request time (422 names an unknown template, a missing variable or an "
            "invalid address), stores the notification and queues `mimic.tasks.send_email` in "
            "one transaction. `Idempotency-Key` is scoped to the tenant: the same key and body "
            "return the original response (with `Idempotent-Replayed: true`); the same key "
            "with another body is 409."
        ),
        responses={**ERRORS, 409: ResponseSpec(ErrorBody, description="Key reused")},
    )
    async def send_email(
        data: JSONBody[EmailRequest],
        state: State,
        idempotency_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", required=False, max_length=255)
        ] = None,
    ) -> Response[Accepted]:
        deps: Deps = state.deps
        if data.tenant_id is not None:
            check_tenant(data.tenant_id)
        if idempotency_key is not None:
            # Before rendering: a replay answers as the first time did, even if a template
            # or credential has changed since.
            earlier = await replay(deps.db, data.tenant_id, idempotency_key, data.fingerprint())
            if earlier is not None:
                return Response(earlier, status_code=202, headers={"Idempotent-Replayed": "true"})
        recipients = check_recipients(data)
        rendered = templates.render(data.template, data.data, data.locale)
        provider, tenant_from = await choose_provider(deps, data)
        sender = recipients.sender or tenant_from or deps.settings.email_from
        accepted, replayed = await create_notification(
            deps.db,
            request=data,
            recipients=recipients,
            rendered=rendered,
            sender=sender,
            provider=provider,
            idempotency_key=idempotency_key,
        )
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return Response(accepted, status_code=202, headers=headers)

    @get(
        "/notifications/{notification_id:uuid}",
        summary="A notification with its status timeline",
        responses={404: ResponseSpec(ErrorBody, description="No such notification")},
    )
    async def get_one(notification_id: FromPath[uuid.UUID], state: State) -> NotificationOut:
        return await get_notification(state.deps.db, notification_id)

    @get("/notifications", summary="Notifications, newest first (keyset pagination)")
    async def list_all(
        state: State,
        tenant_id: FromQuery[str | None] = None,
        status: FromQuery[Status | None] = None,
        to: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> Page:
        return await list_notifications(
            state.deps.db, tenant_id=tenant_id, status=status, to=to, limit=limit, cursor=cursor
        )

    @get("/templates", summary="Every template with the variables it needs")
    async def list_templates() -> list[TemplateInfo]:
        return [templates.describe(name) for name in templates.names()]

    @post(
        "/templates/{name:str}/preview",
        status_code=200,
        summary="Render a template without sending",
        responses=ERRORS,
    )
    async def preview(name: FromPath[str], data: JSONBody[PreviewIn]) -> Rendered:
        return templates.render(name, data.data, data.locale)

    credential_path = "/tenants/{tenant_id:str}/credentials/{provider:str}"

    def _provider(value: str) -> CredentialProvider:
        if value not in ("smtp", "resend", "postmark"):
            raise BadRequest("provider must be smtp, resend or postmark", code="invalid_provider")
        return value  # type: ignore[return-value]

    @put(
        credential_path,
        summary="Store a tenant's provider key (encrypted; never shown again)",
        responses={**ERRORS, 503: ResponseSpec(ErrorBody, description="No encryption key")},
    )
    async def put_cred(
        tenant_id: FromPath[str],
        provider: FromPath[str],
        data: JSONBody[CredentialIn],
        state: State,
    ) -> CredentialOut:
        deps: Deps = state.deps
        return await put_credential(
            deps.db, deps.keyring, check_tenant(tenant_id), _provider(provider), data
        )

    @get(credential_path, summary="A tenant's credential: provider, from_email, last 4, times")
    async def get_cred(
        tenant_id: FromPath[str], provider: FromPath[str], state: State
    ) -> CredentialOut:
        return await get_credential(state.deps.db, check_tenant(tenant_id), _provider(provider))

    @delete(credential_path, summary="Remove a tenant's credential")
    async def delete_cred(tenant_id: FromPath[str], provider: FromPath[str], state: State) -> None:
        await delete_credential(state.deps.db, check_tenant(tenant_id), _provider(provider))

    return [
        Router(
            path="/api/v1",
            guards=[require_api_key],
            route_handlers=[
                send_email,
                get_one,
                list_all,
                list_templates,
                preview,
                put_cred,
                get_cred,
                delete_cred,
            ],
            tags=["notifications"],
            security=[{"apiKey": []}, {"bearer": []}],
        )
    ]
