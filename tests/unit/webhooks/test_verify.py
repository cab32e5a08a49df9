from __future__ import annotations

import time

import pytest
from stripe import WebhookSignature

from mimic.webhooks.verify import SignatureRejected, verify_stripe

SECRET = "whsec_unit_secret"
BODY = b'{"id":"evt_1","type":"invoice.paid"}'


def header(body: bytes = BODY, secret: str = SECRET, at: float | None = None) -> str:
    at = time.time() if at is None else at
    return str(WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=int(at)))


def check(h: str | None, body: bytes = BODY) -> None:
    verify_stripe(secret=SECRET, header=h, body=body, now=time.time(), tolerance=300)


def reason(h: str | None, body: bytes = BODY) -> str:
    with pytest.raises(SignatureRejected) as info:
        check(h, body)
    assert info.value.status_code == 400
    return info.value.code


def test_valid_signature_passes() -> None:
    check(header())


def test_any_matching_v1_passes_so_secret_rotation_works() -> None:
    old = header(secret="whsec_old_secret").split(",")[1]
    check(f"{header()},{old}")
    check(f"{header(secret='whsec_old_secret')},{header().split(',')[1]}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "missing_signature"),
        ("", "missing_signature"),
        ("garbage", "malformed_signature"),
        ("t=abc,v1=00", "malformed_signature"),
        ("v1=00ff", "malformed_signature"),
        (f"t={1790000000}", "malformed_signature"),
        (f"t={1790000000},t={1790000000},v1=00", "malformed_signature"),
        (f"t={1790000000},v0=00ff", "malformed_signature"),
    ],
)
def test_missing_or_malformed_header(value: str | None, expected: str) -> None:
    assert reason(value) == expected


def test_wrong_secret_is_a_mismatch() -> None:
    assert reason(header(secret="whsec_other")) == "signature_mismatch"


def test_tampered_body_is_a_mismatch() -> None:
    assert reason(header(), body=BODY.replace(b"evt_1", b"evt_2")) == "signature_mismatch"


def test_old_timestamp_is_out_of_tolerance() -> None:
    assert reason(header(at=time.time() - 301)) == "timestamp_out_of_tolerance"
    check(header(at=time.time() - 290))


def test_future_timestamp_is_out_of_tolerance() -> None:
    assert reason(header(at=time.time() + 301)) == "timestamp_out_of_tolerance"
    check(header(at=time.time() + 290))


def test_non_utf8_body_is_rejected() -> None:
    assert reason(header(), body=b"\xff\xfe") == "invalid_body"
