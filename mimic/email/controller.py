"""Internal API for notifications, templates and BYOK credentials (API key required)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, get_args

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from mimic.core.audit import audited
from mimic.core.auth import current_key_id, require_api_key
from mimic.core.deps import Deps
from mimic.core.errors import BadRequest, ErrorBody
from mimic.email import repository
from mimic.email.credentials import (
    CredentialIn,
    CredentialOut,
    delete_credential,
    get_credential,
    put_credential,
)
from mimic.email.rendering import Templates
from mimic.email.schemas import (
    Accepted,
    CredentialProvider,
    EmailRequest,
    NotificationOut,
    NotificationStatus,
    Page,
    PreviewIn,
    Rendered,
    TemplateInfo,
)
from mimic.email.service import check_tenant, submit

ERRORS = {
    400: ResponseSpec(ErrorBody, description="Malformed request"),
    401: ResponseSpec(ErrorBody, description="Missing or wrong API key"),
    422: ResponseSpec(ErrorBody, description="Unknown template, missing variable, bad address"),
}


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
            "invalid address), stores the notification and queues `mimic.tasks.send_email` in "
            "one transaction. `Idempotency-Key` is scoped to the tenant: the same key and body "
            "return the original response (with `Idempotent-Replayed: true`); the same key "
            "with another body is 409."
        ),
        responses={**ERRORS, 409: ResponseSpec(ErrorBody, description="Key reused")},
    )
    async def send_email(
        self,
        data: JSONBody[EmailRequest],
        deps: NamedDependency[Deps],
        templates: NamedDependency[Templates],
        idempotency_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", required=False, max_length=255)
        ] = None,
    ) -> Response[Accepted]:
        accepted, replayed = await submit(deps, templates, data, idempotency_key)
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return Response(accepted, status_code=202, headers=headers)

    @get(
        "/{notification_id:uuid}",
        summary="A notification with its status timeline",
        responses={404: ResponseSpec(ErrorBody, description="No such notification")},
    )
    async def get_one(
        self, notification_id: FromPath[uuid.UUID], deps: NamedDependency[Deps]
    ) -> NotificationOut:
        return await repository.get_notification(deps.db, notification_id)

    @get("/", summary="Notifications, newest first (keyset pagination)")
    async def list_all(
        self,
        deps: NamedDependency[Deps],
        tenant_id: FromQuery[str | None] = None,
        status: FromQuery[NotificationStatus | None] = None,
        to: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> Page:
        return await repository.list_notifications(
            deps.db, tenant_id=tenant_id, status=status, to=to, limit=limit, cursor=cursor
        )


class TemplateController(_Internal):
    path = "/api/v1/templates"

    @get("/", summary="Every template with the variables it needs")
    async def list_templates(self, templates: NamedDependency[Templates]) -> list[TemplateInfo]:
        return [templates.describe(name) for name in templates.names()]

    @post(
        "/{name:str}/preview",
        status_code=200,
        summary="Render a template without sending",
        responses=ERRORS,
    )
    async def preview(
        self, name: FromPath[str], data: JSONBody[PreviewIn], templates: NamedDependency[Templates]
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

    @put(
        "/",
        summary="Store a tenant's provider key (encrypted; never shown again)",
        responses={**ERRORS, 503: ResponseSpec(ErrorBody, description="No encryption key")},
    )
    async def put_cred(
        self,
        tenant_id: FromPath[str],
        provider: FromPath[str],
        data: JSONBody[CredentialIn],
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
    ) -> CredentialOut:
        target = f"{tenant_id}/{provider}"
        async with audited(deps.db, current_key_id(request), "put_credential", [target]):
            return await put_credential(
                deps.db, deps.keyring, check_tenant(tenant_id), _provider(provider), data
            )

    @get("/", summary="A tenant's credential: provider, from_email, last 4, times")
    async def get_cred(
        self, tenant_id: FromPath[str], provider: FromPath[str], deps: NamedDependency[Deps]
    ) -> CredentialOut:
        return await get_credential(deps.db, check_tenant(tenant_id), _provider(provider))

    @delete("/", summary="Remove a tenant's credential")
    async def delete_cred(
        self,
        tenant_id: FromPath[str],
        provider: FromPath[str],
        deps: NamedDependency[Deps],
        request: Request[Any, Any, Any],
    ) -> None:
        target = f"{tenant_id}/{provider}"
        async with audited(deps.db, current_key_id(request), "delete_credential", [target]):
            await delete_credential(deps.db, check_tenant(tenant_id), _provider(provider))


CONTROLLERS = [NotificationController, TemplateController, CredentialController]
