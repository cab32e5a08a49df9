"""The address rule on its own: which addresses are public."""

from __future__ import annotations

import ipaddress

import pytest

from mimic.core.outbound import Allowlist, is_public


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "fec0::1",  # site-local
        "192.0.0.8",  # IETF protocol assignments
    ],
)
def test_special_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_allowlist_entries_by_name_network_and_port() -> None:
    allow = Allowlist(["mail.internal", "10.0.0.0/8", "127.0.0.1:1025", "[::1]:2525"])
    smtp = frozenset({25, 587})
    ten, lo, v6 = (ipaddress.ip_address(a) for a in ("10.9.9.9", "127.0.0.1", "::1"))
    assert allow.allows("MAIL.internal.", ten, 587, smtp)
    assert not allow.allows("mail.internal", ten, 1025, smtp)
    assert allow.allows("anything", ten, 25, smtp)
    assert allow.allows("x", lo, 1025, smtp)
    assert not allow.allows("x", lo, 25, smtp)
    assert allow.allows("x", v6, 2525, smtp)
