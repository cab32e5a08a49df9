"""Signature verification: pure functions of (secret, headers, body, now).

The cryptography is the providers' own libraries: ``stripe``, and ``standardwebhooks`` for
Resend's Svix signatures (the same HMAC under ``webhook-*`` header names, without svix's
dependencies). This module only classifies failures into reasons a provider's operator can
act on.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from stripe import SignatureVerificationError, WebhookSignature

from mimic.core.errors import BadRequest, Unauthorized

# t=<digits>, v<n>=<hex>, or any other key Stripe may add later.
_STRIPE_ITEM = re.compile(r"^(t=\d{1,12}|v\d+=[0-9a-fA-F]+|(?!t=|v\d+=)[a-z0-9_]+=[^,]*)$")

# One or more space-separated "v<n>,<base64>" items (svix checks the v1 ones).
_BASE64 = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
_SVIX_SIGNATURES = re.compile(rf"^v\d+,{_BASE64}( v\d+,{_BASE64})*$")
_SVIX_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
#: Provider event ids longer than this are refused (they are keys, not documents).
MAX_EVENT_ID = 255
_SVIX_ID = re.compile(rf"^[\x21-\x7e]{{1,{MAX_EVENT_ID}}}$")


class SignatureRejected(BadRequest):
    """The webhook signature is invalid."""


class CredentialsRejected(Unauthorized):
    """The webhook credentials are missing or wrong."""


def _stripe_timestamp(header: str) -> int:
    """Parse Stripe-Signature's shape: one ``t=<int>`` and at least one ``v1=<hex>``."""
    items = [item.strip() for item in header.split(",")]
    if not items or not all(_STRIPE_ITEM.match(item) for item in items):
        raise SignatureRejected(
            "Stripe-Signature must look like t=<unix time>,v1=<hex signature>",
            code="malformed_signature",
        )
    timestamps = [item[2:] for item in items if item.startswith("t=")]
    has_v1 = any(item.startswith("v1=") for item in items)
    if len(timestamps) != 1 or not has_v1:
        raise SignatureRejected(
            "Stripe-Signature needs exactly one t= and at least one v1= item",
            code="malformed_signature",
        )
    return int(timestamps[0])


def verify_stripe(
    *, secret: str, header: str | None, body: bytes, now: float, tolerance: int
) -> None:
    """Accept any matching ``v1`` (secret rotation) within ±``tolerance`` seconds of now.

    Stripe's verifier rejects only old timestamps; Mimic also rejects timestamps more than
    ``tolerance`` seconds in the future, since a correct sender never produces one.
    """
    if not header:
        raise SignatureRejected("Stripe-Signature header is missing", code="missing_signature")
    timestamp = _stripe_timestamp(header)
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureRejected("body is not UTF-8", code="invalid_body") from None
    try:
        WebhookSignature.verify_header(payload, header, secret, tolerance)
    except SignatureVerificationError:
        if timestamp < now - tolerance:
            raise SignatureRejected(
                f"signature timestamp is more than {tolerance}s old",
                code="timestamp_out_of_tolerance",
            ) from None
        raise SignatureRejected(
            "no v1 signature matches the body and the endpoint secret",
            code="signature_mismatch",
        ) from None
    if timestamp > now + tolerance:
        raise SignatureRejected(
            f"signature timestamp is more than {tolerance}s in the future",
            code="timestamp_out_of_tolerance",
        )


def verify_svix(
    *, secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance: int = 300
) -> str:
    """Verify Resend's Svix signature (``svix-id``, ``svix-timestamp``, ``svix-signature``).

    Returns the ``svix-id`` (the message id, stable across Resend's retries).
    """
    msg_id = headers.get("svix-id")
    timestamp = headers.get("svix-timestamp")
    signature = headers.get("svix-signature")
    if not msg_id or not timestamp or not signature:
        raise SignatureRejected(
            "svix-id, svix-timestamp and svix-signature headers are required",
            code="missing_signature",
        )
    if (
        not _SVIX_TIMESTAMP.match(timestamp)
        or not _SVIX_SIGNATURES.match(signature)
        or not _SVIX_ID.match(msg_id)
    ):
        raise SignatureRejected(
            "svix-timestamp must be unix seconds, svix-signature v1,<base64> items and "
            f"svix-id 1-{MAX_EVENT_ID} printable ASCII characters",
            code="malformed_signature",
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureRejected("body is not UTF-8", code="invalid_body") from None
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureRejected(
            f"signature timestamp is more than {tolerance}s from now",
            code="timestamp_out_of_tolerance",
        )
    try:
        Webhook(secret).verify(
            body,
            {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature},
            json_parse=False,
        )
    except WebhookVerificationError:
        raise SignatureRejected(
            "no v1 signature matches the body and the endpoint secret",
            code="signature_mismatch",
        ) from None
    return msg_id


def verify_basic_auth(*, secret: str, header: str | None) -> None:
    """Postmark signs nothing: its webhook URL carries HTTP Basic credentials instead.

    Any user name is accepted; the password must equal the configured secret.
    """
    if not header:
        raise CredentialsRejected("HTTP Basic credentials are required", code="missing_credentials")
    scheme, _, encoded = header.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if scheme.lower() != "basic" or ":" not in decoded:
        raise CredentialsRejected(
            "Authorization must be Basic base64(user:password)", code="malformed_credentials"
        )
    password = decoded.partition(":")[2]
    if not hmac.compare_digest(password.encode(), secret.encode()):
        raise CredentialsRejected("wrong webhook credentials", code="invalid_credentials")
