"""Email address checks: syntax only (no DNS), with the field named in the error."""

from __future__ import annotations

import email.utils
import re

from email_validator import EmailNotValidError, validate_email

from mimic.core.errors import Unprocessable

# Characters that end or bend a header line somewhere along the way: C0 controls (CR, LF, and
# VT/FF, which str.splitlines and some generators treat as line ends), DEL, C1 controls (NEL),
# and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def validate_address(value: str, field: str) -> str:
    """Accept ``a@b.example`` or ``Name <a@b.example>``; return it normalised."""
    if _CONTROL.search(value):
        raise Unprocessable(
            f"{field}: invalid address: control characters and line separators are not "
            "allowed in a name or address",
            code="invalid_address",
        )
    name, address = email.utils.parseaddr(value)
    if not address:
        raise Unprocessable(f"{field}: invalid address {value!r}", code="invalid_address")
    try:
        normalised = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise Unprocessable(
            f"{field}: invalid address {value!r}: {exc}", code="invalid_address"
        ) from None
    return email.utils.formataddr((name, normalised)) if name else normalised


def validate_addresses(values: list[str], field: str) -> list[str]:
    return [validate_address(v, f"{field}[{i}]") for i, v in enumerate(values)]


def domain_of(address: str) -> str:
    """The domain of ``a@b.example`` or ``Name <a@b.example>``, as its IDNA A-label in lower
    case (``Bücher.Example`` is ``xn--bcher-kva.example``): how sender domains compare."""
    _, bare = email.utils.parseaddr(address)
    try:
        return validate_email(bare, check_deliverability=False).ascii_domain.lower()
    except EmailNotValidError:
        # Only for an address stored before today's checks: compare its text as it is.
        return bare.rpartition("@")[2].lower()


def validate_domain(value: str, field: str) -> str:
    """A domain a sender address may have: lower case, IDNA A-label, no wildcard."""
    if "*" in value:
        raise Unprocessable(
            f"{field}: {value!r}: wildcards are not allowed; list each domain (a subdomain "
            "is not covered by its parent)",
            code="invalid_domain",
        )
    if "@" in value or _CONTROL.search(value):
        raise Unprocessable(
            f"{field}: {value!r} is not a domain name (give the part after the @)",
            code="invalid_domain",
        )
    try:
        checked = validate_email(f"postmaster@{value}", check_deliverability=False)
    except EmailNotValidError as exc:
        reason = str(exc).replace("The part after the @-sign", "The domain")
        raise Unprocessable(
            f"{field}: {value!r} is not a domain a sender address can have: {reason}",
            code="invalid_domain",
        ) from None
    return checked.ascii_domain.lower()
