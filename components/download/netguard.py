"""The private-network guard: image URLs may only reach public addresses.

A training JSON can come from anyone. Without this guard, a URL or a redirect to
``localhost``, ``10.0.0.5`` or the cloud metadata address ``169.254.169.254`` would make a
worker probe internal services. Every host is checked at every hop:

- an IP literal (any IPv4 spelling browsers accept, such as ``2130706433``, ``0x7f000001``,
  ``0177.0.0.1`` or ``127.1``, and IPv6 with its IPv4-mapped, 6to4 and NAT64 forms) before
  the request;
- a name inside the connector's resolver, after DNS: the connector connects to the
  addresses the resolver returned, so no second lookup can answer differently.
"""

import ipaddress
import re
import socket
from typing import Iterable, List, Optional, Sequence, Union

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# What inet_aton accepts: 1 to 4 dot-separated numbers, decimal, octal or hex.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)


class BlockedAddress(OSError):
    """A host is or resolves to an address the guard refuses. An OSError so aiohttp passes it on."""


def parse_networks(values: Iterable[str]) -> List[Network]:
    """Parses CIDR strings such as ``10.1.2.0/24``.

    Raises:
      ValueError: naming the value that is not a network.
    """
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP network such as 10.1.2.0/24") from None
    return networks


def _embedded_ipv4(ip: IPAddress) -> Optional[ipaddress.IPv4Address]:
    if ip.version != 6:
        return None
    for embedded in (ip.ipv4_mapped, ip.sixtofour):
        if embedded is not None:
            return embedded
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(ip: IPAddress, allowed: Sequence[Network] = ()) -> str:
    """Why ``ip`` is refused ('loopback', 'private', ...), or '' when it may be fetched.

    IPv6 forms that carry an IPv4 address (mapped, 6to4, NAT64) are judged by that address.
    ``allowed`` networks are always fetched (an intranet image server, say).
    """
    embedded = _embedded_ipv4(ip)
    if any(ip in net or (embedded is not None and embedded in net) for net in allowed):
        return ""
    if embedded is not None:
        return refusal(embedded, allowed)
    checks = (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("site-local", ip.version == 6 and ip.is_site_local),
    )
    for name, hit in checks:
        if hit:
            return name
    # What remains but is not global: shared address space (100.64.0.0/10) and the like.
    return "" if ip.is_global else "non-global"


def numeric_host(host: str) -> Optional[IPAddress]:
    """The address an IP-literal host names, in any spelling; None for a DNS name."""
    host = host.strip("[]")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    if not _NUMERIC_HOST.match(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def canonical_url(url: str) -> str:
    """Rewrites a numeric IPv4 host to dotted-quad form, as browsers do (``2130706433`` -> ``127.0.0.1``).

    Other URLs come back unchanged.
    """
    parsed = URL(url)
    host = parsed.raw_host or ""
    ip = numeric_host(host) if ":" not in host else None
    if ip is None or str(ip) == host:
        return url
    return str(parsed.with_host(str(ip)))


def check_literal(host: str, allowed: Sequence[Network] = ()) -> None:
    """Raises BlockedAddress when ``host`` is an IP literal the guard refuses; names pass."""
    ip = numeric_host(host)
    if ip is not None:
        why = refusal(ip, allowed)
        if why:
            raise BlockedAddress(f"{host} is a {why} address")


class GuardedResolver(AbstractResolver):
    """Resolves with the default resolver, then refuses the host if any address is refused."""

    def __init__(self, allowed: Sequence[Network] = ()):
        self._inner = DefaultResolver()
        self._allowed = tuple(allowed)

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        results = await self._inner.resolve(host, port, family)
        for result in results:
            ip = ipaddress.ip_address(result["host"].split("%", 1)[0])
            why = refusal(ip, self._allowed)
            if why:
                raise BlockedAddress(f"{host} resolves to {ip}, a {why} address")
        return results

    async def close(self) -> None:
        await self._inner.close()
