"""The SSRF guard: webhook URLs may only reach public addresses.

The name is resolved and every address checked, at creation and again at
each delivery, and the connection goes to a checked address (the resolver
below hands aiohttp only those), so a name that re-resolves to a private
address between the check and the connection is still refused.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_S = 3.0


class UnsafeUrl(ValueError):
    """A webhook URL that may not be used; the message says why."""


def check_url_shape(url: str) -> tuple[str, int]:
    """The host and port of a well-formed http(s) URL, or UnsafeUrl."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"URLs are limited to {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("only http and https URLs can receive webhooks")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("credentials in the URL are not allowed; use the signing secret")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrl(f"the URL's port is invalid: {exc}") from exc
    return parts.hostname, port


_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT, RFC 2765
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated, RFC 4291 2.5.5.1
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")  # RFC 3056
_TEREDO = ipaddress.IPv6Network("2001::/32")  # RFC 4380
_LOW_32_BITS = (
    _IPV4_MAPPED, _IPV4_TRANSLATED, _IPV4_COMPATIBLE, _NAT64_WELL_KNOWN, _NAT64_LOCAL_USE,
)  # fmt: skip


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...] | None:
    """The IPv4 address(es) an IPv6 address stands for, or None if it is not
    one of the forms that embed one.

    A packet to such an address ends up at (or is relayed by) the IPv4 host,
    so it is that host that must be public. ``ipaddress`` judges some of these
    forms by their IPv6 prefix alone (``64:ff9b::7f00:1`` is "global").

    - IPv4-mapped ``::ffff:0:0/96``, SIIT ``::ffff:0:0:0/96``, IPv4-compatible
      ``::/96`` and NAT64 ``64:ff9b::/96``: the last 32 bits.
    - NAT64 local-use ``64:ff9b:1::/48``: the last 32 bits (the RFC 6052 /96
      form; the /48 and /56 forms leave them zero, 0.0.0.0, so are refused).
    - 6to4 ``2002::/16``: bits 16-47.
    - Teredo ``2001::/32``: the server (bits 32-63) and the client (the last
      32 bits, inverted); both must be public.
    """
    if ip in _TEREDO:
        assert ip.teredo is not None
        return ip.teredo
    if ip in _SIX_TO_FOUR:
        assert ip.sixtofour is not None
        return (ip.sixtofour,)
    if any(ip in network for network in _LOW_32_BITS):
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    return None


def is_public(address: str) -> bool:
    """Routable on the public internet: not private, loopback, link-local
    (cloud metadata), multicast, reserved, unspecified or shared (CGNAT).
    An IPv6 address that embeds IPv4 addresses is judged by those."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = embedded_ipv4(ip)
        if embedded is not None:
            return all(_is_public_ip(v4) for v4 in embedded)
    return _is_public_ip(ip)


def _is_public_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUrl(f"the host {host!r} does not resolve: {exc.strerror}") from exc
    except TimeoutError:
        raise UnsafeUrl(f"the host {host!r} did not resolve in {RESOLVE_TIMEOUT_S:g}s") from None
    return sorted({str(info[4][0]) for info in infos})


async def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse a URL whose host resolves to any non-public address."""
    host, port = check_url_shape(url)
    if allow_private:
        return
    addresses = await resolve(host, port)
    blocked = [a for a in addresses if not is_public(a)]
    if blocked:
        raise UnsafeUrl(
            f"{host} resolves to a non-public address ({', '.join(blocked)}); "
            "set MENTORFLOW_WEBHOOK_ALLOW_PRIVATE=1 to allow this in development"
        )


def refuse_private_literal(url: str) -> None:
    """aiohttp connects to an IP-literal host without asking the resolver, so
    those are checked here, at each delivery."""
    host, _ = check_url_shape(url)
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return  # a name: GuardedResolver checks what it resolves to
    if not is_public(host.strip("[]")):
        raise UnsafeUrl(f"refused: {host} is a non-public address")


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that drops non-public addresses (unless allowed), so
    a delivery connects only to an address that passed the check."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._allow_private or is_public(r["host"])]
        if not allowed:
            raise OSError(errno.EACCES, f"refused: {host} resolves only to non-public addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
