"""Signature verification: pure functions of (secret, headers, body, now).

The cryptography is the providers' own libraries (``stripe`` and ``svix``); this module only
classifies failures into reasons a provider's operator can act on.
"""

from __future__ import annotations

import re

from stripe import SignatureVerificationError, WebhookSignature

from mimic.errors import BadRequest

# t=<digits>, v<n>=<hex>, or any other key Stripe may add later.
_STRIPE_ITEM = re.compile(r"^(t=\d{1,12}|v\d+=[0-9a-fA-F]+|(?!t=|v\d+=)[a-z0-9_]+=[^,]*)$")


class SignatureRejected(BadRequest):
    """The webhook signature is invalid."""


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
