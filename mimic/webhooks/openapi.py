"""The OpenAPI operations of the webhook receivers: they are lean ASGI routes, not HTTP route
handlers, so their operations are written here from the same endpoint table they serve."""

from __future__ import annotations

from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    PathItem,
    Reference,
    RequestBody,
    Schema,
)

from mimic.webhooks.controller import BASE_PATH, endpoints


def _json(schema: Schema | Reference) -> dict[str, OpenAPIMediaType]:
    return {"application/json": OpenAPIMediaType(schema=schema)}


ERROR_BODY = Reference(ref="#/components/schemas/ErrorBody")
ERRORS = {
    400: "Rejected: bad signature, header or JSON",
    413: "Body over WEBHOOK_MAX_BODY_BYTES",
    503: "Not stored; the provider should retry",
}
ACCEPTED = Schema(
    type=OpenAPIType.OBJECT,
    title="WebhookAccepted",
    required=["duplicate", "event_id"],
    properties={
        "event_id": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID),
        "duplicate": Schema(type=OpenAPIType.BOOLEAN),
    },
)


def document(openapi: OpenAPI, *, dev: bool) -> None:
    """Add the webhook operations to the app's OpenAPI document (once, before serving)."""
    assert openapi.components.schemas is not None
    openapi.components.schemas["WebhookAccepted"] = ACCEPTED
    for endpoint in endpoints(dev):
        responses: dict[str, OpenAPIResponse | Reference] = {
            "200": OpenAPIResponse(
                description="Stored (or a duplicate of an event already stored)",
                content=_json(Reference(ref="#/components/schemas/WebhookAccepted")),
            )
        }
        for status, text in {**ERRORS, **endpoint.more_errors}.items():
            responses[str(status)] = OpenAPIResponse(description=text, content=_json(ERROR_BODY))
        operation = Operation(
            tags=["webhooks"],
            summary=endpoint.summary,
            description=endpoint.description,
            operation_id=endpoint.operation_id,
            request_body=RequestBody(
                required=True,
                description=endpoint.body_description,
                content={
                    "application/json": OpenAPIMediaType(
                        schema=Schema(type=OpenAPIType.OBJECT), example=endpoint.example
                    )
                },
            ),
            responses=responses,
        )
        if openapi.paths is None:
            openapi.paths = {}
        openapi.paths[BASE_PATH + endpoint.path] = PathItem(post=operation)
