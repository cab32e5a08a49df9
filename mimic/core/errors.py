"""One exception tree for the whole service. A class's docstring is its default message."""

from __future__ import annotations

import math

import msgspec
from litestar.openapi.datastructures import ResponseSpec


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every error response: a stable machine code and a human sentence."""

    error: str
    detail: str


def error_spec(description: str) -> ResponseSpec:
    """An error response in the OpenAPI document: Mimic's one error body. Without generated
    examples: making them imports polyfactory and Faker, which cost the API about 60 MB of
    peak memory the first time /docs is served."""
    return ResponseSpec(ErrorBody, description=description, generate_examples=False)


class MimicError(Exception):
    """Internal error."""

    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or (self.__doc__ or "").strip()
        if code is not None:
            self.code = code
        #: Extra response headers (e.g. Retry-After on a 503).
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(MimicError):
    """The request is invalid."""

    status_code = 400
    code = "bad_request"


class InvalidInput(BadRequest):
    """A value cannot be stored."""

    code = "invalid_input"


class Unauthorized(MimicError):
    """An API key is required: X-API-Key: <key>, or Authorization: Bearer <key>."""

    status_code = 401
    code = "unauthorized"


class Forbidden(MimicError):
    """This key may not do that."""

    status_code = 403
    code = "forbidden"


class NotFound(MimicError):
    """Not found."""

    status_code = 404
    code = "not_found"


class Conflict(MimicError):
    """The request conflicts with an earlier one."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(MimicError):
    """The request body is larger than the limit."""

    status_code = 413
    code = "payload_too_large"


class Unprocessable(MimicError):
    """The request is well-formed but cannot be processed."""

    status_code = 422
    code = "unprocessable"


def whole_seconds(seconds: float) -> int:
    """A wait as Retry-After gives it: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds))


class TooManyRequests(MimicError):
    """Too many requests; retry later."""

    status_code = 429
    code = "too_many_requests"

    def __init__(
        self, message: str | None = None, *, code: str | None = None, retry_after: float
    ) -> None:
        super().__init__(message, code=code)
        #: Seconds until a retry can succeed; the exception-to-response function sends it as
        #: Retry-After (``whole_seconds``).
        self.retry_after = retry_after

    def retry_after_header(self) -> str:
        return str(whole_seconds(self.retry_after))


class BadGateway(MimicError):
    """An upstream service failed."""

    status_code = 502
    code = "bad_gateway"


class ServiceUnavailable(MimicError):
    """The service is unavailable; retry later."""

    status_code = 503
    code = "unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    """The database is unavailable; retry later."""

    code = "database_unavailable"


class NotConfigured(ServiceUnavailable):
    """This feature is not configured on the server."""

    code = "not_configured"


class DatabaseError(MimicError):
    """The database refused the statement."""

    code = "database_error"


class SchemaError(MimicError):
    """The database schema does not match this version of Mimic."""


class ExpectedJobError(Exception):
    """A job failure Mimic has already logged in one line (a retry, or a final failure it
    explains): procrastinate's own log line for it is kept, without a traceback."""
