"""Which URLs the bot may send a user's Jira token to: no server-side request forgery.

An admin installs a Jira instance from chat, and users then send their tokens to it. A URL that
leads to the bot's own host, its network or a cloud metadata service (169.254.169.254) would let
anyone with that admin right read those places with the bot's reach, or collect the tokens. So
an instance URL must resolve to public addresses only, unless `security.allow_private_instance_urls`
says the operator runs Jira on a private network.

`address_allowed` is the pure rule; `check_public_url` applies it to every address a host
resolves to, through a resolver it is given (the event loop's getaddrinfo by default; tests pass
a fake). Numeric hosts are read here as the C library would (2130706433, 0x7f.1, 0177.0.0.1), so
no spelling slips past without a resolver.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from urllib.parse import urlsplit

IPAddress = IPv4Address | IPv6Address

# Answers the addresses (as text) a host name resolves to; raises OSError when it cannot.
Resolve = Callable[[str, int], Awaitable[Iterable[str]]]

SETTING = "security.allow_private_instance_urls"
RESOLVE_TIMEOUT_SECONDS = 10.0

_NAT64 = IPv6Network("64:ff9b::/96")
_SHARED = IPv4Network("100.64.0.0/10")  # carrier-grade NAT: not reachable from the internet
_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


class UnsafeUrl(ValueError):
    """The URL may not receive a token. `address` is the refused address, if one was found."""

    def __init__(self, message: str, *, host: str = "", address: IPAddress | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.address = address


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped ::ffff:a.b.c.d, 6to4, NAT64), if any:
    the packet ends up at that IPv4 address, so it is what must be judged."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(ip: IPAddress) -> bool:
    """True for a public unicast address; False for loopback, link-local, private, shared
    (CGNAT), multicast, unspecified (0.0.0.0, ::), reserved and documentation ranges, also when
    written as an IPv6 form of such an IPv4 address."""
    if isinstance(ip, IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return address_allowed(inner)
        if ip.is_site_local:
            return False
    if (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
    ):
        return False
    if isinstance(ip, IPv4Address) and ip in _SHARED:
        return False
    return ip.is_global


def _part_value(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    return int(part, 8) if part.startswith("0") else int(part)


def numeric_ipv4(host: str) -> IPv4Address | None:
    """The address of a host written the way inet_aton reads it: 1 to 4 dot-separated parts in
    decimal, octal (leading 0) or hex (0x), the last part filling the remaining bytes
    (2130706433, 127.1, 0x7f.1, 0177.0.0.1). None when `host` is not such a number."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_PART.fullmatch(p) for p in parts):
        return None
    values = [_part_value(p) for p in parts]
    if any(v > 0xFF for v in values[:-1]) or values[-1] >= 256 ** (5 - len(parts)):
        return None
    number = 0
    for v in values[:-1]:
        number = number << 8 | v
    number = number << 8 * (5 - len(parts)) | values[-1]
    return IPv4Address(number)


def literal_address(host: str) -> IPAddress | None:
    """The address `host` spells directly (IPv4 in any inet_aton spelling, IPv6 with or
    without brackets or zone), or None for a host name."""
    text = host.strip("[]")
    try:
        return ip_address(text)
    except ValueError:
        pass
    return numeric_ipv4(text.rstrip(".")) if text else None


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for `host`, looked up through the event loop
    (its default executor), so the loop is never blocked by DNS."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _parse_answer(text: str) -> IPAddress:
    # getaddrinfo writes a link-local IPv6 answer with its zone (fe80::1%eth0).
    return ip_address(text.split("%", 1)[0])


async def check_public_url(url: str, *, allow_private: bool, resolve: Resolve = system_resolve) -> None:
    """Raise UnsafeUrl unless `url` is http(s) and its host resolves only to public addresses.
    With `allow_private`, any http(s) URL passes without resolving. Every address counts, not
    the first: a connection may use any of them."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise UnsafeUrl(f"{url!r} is not an http(s) URL.", host=host)
    if allow_private:
        return
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            answers = await asyncio.wait_for(resolve(host, port), RESOLVE_TIMEOUT_SECONDS)
            addresses = [_parse_answer(a) for a in answers]
        except (OSError, TimeoutError, UnicodeError, ValueError):
            addresses = []
        if not addresses:
            raise UnsafeUrl(f"The host {host} cannot be resolved; check the URL.", host=host)
    for address in addresses:
        if not address_allowed(address):
            where = f"{host} is" if literal is not None else f"{host} resolves to {address},"
            raise UnsafeUrl(
                f"{where} a loopback, private, link-local or multicast address.",
                host=host,
                address=address,
            )


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """The instance URL rule as configured: `check(url)` raises UnsafeUrl when it is refused."""

    allow_private: bool = False
    resolve: Resolve = system_resolve

    async def check(self, url: str) -> None:
        await check_public_url(url, allow_private=self.allow_private, resolve=self.resolve)
