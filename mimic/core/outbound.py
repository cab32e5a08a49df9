"""Where Mimic may connect on a tenant's behalf: the rule against SSRF.

A tenant can name a server (today: its SMTP host). Before Mimic connects, the host is
resolved at send time and every address it resolves to must be public: loopback, private,
link-local, multicast, reserved and other special ranges (IPv4 and IPv6, IPv4-mapped IPv6
included) are refused, unless the operator allows the host in an allowlist
(``SMTP_ALLOWED_HOSTS``). The connection then goes to the address that was checked, so a
second DNS answer cannot swap in another one. The same rule serves any URL a tenant can set.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Iterable

#: The ports SMTP servers listen on (submission, SMTPS, relay, the common alternative).
SMTP_PORTS = frozenset({25, 465, 587, 2525})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(Exception):
    """The destination is not allowed. The reason names the rule, never a server's reply."""


class Unresolved(Exception):
    """The host did not resolve (perhaps for now)."""


def parse_entry(raw: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, an IP, a CIDR or ``[v6]:port``; ValueError when malformed."""
    raw = raw.strip().lower()
    port: int | None = None
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest:
            port = int(rest.removeprefix(":"))
    elif raw.count(":") == 1:
        host, _, port_text = raw.partition(":")
        port = int(port_text)
    else:
        host = raw
    if not host or (port is not None and not 0 < port < 65536):
        raise ValueError(raw)
    return host, port


class Allowlist:
    """Hosts (names, addresses or networks) the operator allows despite the rule. An entry
    without a port allows the usual ports; ``host:port`` allows that port too."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._names: list[tuple[str, int | None]] = []
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for entry in entries:
            host, port = parse_entry(entry)
            try:
                self._networks.append((ipaddress.ip_network(host, strict=False), port))
            except ValueError:
                self._names.append((host.rstrip("."), port))

    def allows(self, host: str, address: Address, port: int, ports: frozenset[int]) -> bool:
        """Is this host, at this address and port, allowed by an entry?"""

        def port_ok(allowed: int | None) -> bool:
            return port == allowed or (allowed is None and port in ports)

        name = host.lower().rstrip(".")
        if any(n == name and port_ok(p) for n, p in self._names):
            return True
        return any(address in net and port_ok(p) for net, p in self._networks)


#: 192.0.0.0/24: IETF protocol assignments (Python 3.11 counts parts of it as global).
_IETF_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")


@functools.lru_cache(maxsize=8)
def allowlist(entries: tuple[str, ...]) -> Allowlist:
    """The Allowlist for a setting's entries, parsed once (not on every send)."""
    return Allowlist(entries)


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None and not is_public(embedded):
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False
    if address in _IETF_PROTOCOL_ASSIGNMENTS:
        return False
    special = (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )
    return address.is_global and not special


async def resolve_checked(
    host: str, port: int, *, allowlist: Allowlist, ports: frozenset[int]
) -> list[tuple[int, tuple[object, ...]]]:
    """Resolve ``host`` now and check every address; returns (family, sockaddr) to connect to.
    Raises OutboundRefused (a rule says no) or Unresolved (DNS said nothing)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(f"host did not resolve ({type(exc).__name__})") from None
    found: list[tuple[int, tuple[object, ...]]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if allowlist.allows(host, address, port, ports):
            pass
        elif port not in ports:
            allowed = ", ".join(str(p) for p in sorted(ports))
            raise OutboundRefused(f"port {port} is not allowed (allowed: {allowed})")
        elif not is_public(address):
            raise OutboundRefused(
                "host resolves to a non-public address (loopback, private, link-local, "
                "multicast or reserved); an operator can allow it in SMTP_ALLOWED_HOSTS"
            )
        found.append((family, tuple(sockaddr)))
    if not found:
        raise Unresolved("host did not resolve")
    return found


async def connect_checked(
    addresses: list[tuple[int, tuple[object, ...]]], *, timeout: float
) -> socket.socket:
    """A connected socket to the first checked address that answers."""
    loop = asyncio.get_running_loop()
    last: OSError | TimeoutError = OSError("no address")
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, sockaddr), timeout)
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc
            continue
        return sock
    raise last
