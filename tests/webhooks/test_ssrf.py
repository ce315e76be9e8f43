"""The SSRF guard refuses webhook targets on non-public addresses."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given, settings
from hypothesis import strategies as st

from service.webhooks.ssrf import (
    GuardedResolver,
    UnsafeUrl,
    check_url,
    is_public,
    refuse_private_literal,
)

REFUSED = [
    "http://127.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[::1]/",
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/",
    "http://localhost:8080/hook",  # a name that resolves to a private address
]


@pytest.mark.parametrize("url", REFUSED)
async def test_non_public_targets_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl, match=r"non-public|MENTORFLOW_WEBHOOK_ALLOW_PRIVATE"):
        await check_url(url, allow_private=False)


@pytest.mark.parametrize("url", REFUSED)
async def test_the_setting_allows_them_for_development(url: str) -> None:
    await check_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/", "file:///etc/passwd", "http:///nohost", "http://user:pw@example.com/",
     "http://example.com:99999/"],
)  # fmt: skip
async def test_malformed_urls_are_refused_even_when_private_is_allowed(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        await check_url(url, allow_private=True)


def test_public_addresses_pass() -> None:
    assert is_public("93.184.216.34")
    assert is_public("2606:2800:220:1:248:1893:25c8:1946")
    assert not is_public("224.0.0.1")


# Every IPv6 form that embeds an IPv4 address is judged by that address: at
# endpoint creation (a literal in the URL), and at delivery (the literal
# again, and any address a name resolves to).

EMBEDDED = {
    "loopback": "127.0.0.1",
    "private": "10.1.2.3",
    "link-local": "169.254.169.254",
    "shared": "100.64.0.1",
    "public": "93.184.216.34",
}
PUBLIC_V4 = ipaddress.IPv4Address("93.184.216.34")


def _v6(value: int) -> str:
    return str(ipaddress.IPv6Address(value))


def _teredo(server: ipaddress.IPv4Address, client: ipaddress.IPv4Address, port: int = 40000) -> str:
    """2001:0:SERVER:flags:~port:~client (RFC 4380)."""
    return _v6(
        (0x2001_0000 << 96)
        | (int(server) << 64)
        | (0x8000 << 48)
        | ((port ^ 0xFFFF) << 32)
        | (int(client) ^ 0xFFFFFFFF)
    )


EMBEDDINGS: dict[str, Callable[[ipaddress.IPv4Address], str]] = {
    "ipv4-mapped ::ffff:0:0/96": lambda a: _v6(0xFFFF_0000_0000 | int(a)),
    "ipv4-translated ::ffff:0:0:0/96": lambda a: _v6((0xFFFF << 48) | int(a)),
    "ipv4-compatible ::/96": lambda a: _v6(int(a)),
    "nat64 64:ff9b::/96": lambda a: _v6((0x64_FF9B << 96) | int(a)),
    "nat64 local-use 64:ff9b:1::/48": lambda a: _v6((0x64_FF9B_0001 << 80) | int(a)),
    "6to4 2002::/16": lambda a: _v6((0x2002 << 112) | (int(a) << 80) | 0x1),
    "teredo client": lambda a: _teredo(PUBLIC_V4, a),
    "teredo server": lambda a: _teredo(a, PUBLIC_V4),
}


class _StaticResolver(AbstractResolver):
    """What a DNS name would resolve to, without DNS."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        result = ResolveResult(
            hostname=host, host=self.address, port=port, family=socket.AF_INET6, proto=0, flags=0
        )
        return [result]

    async def close(self) -> None:
        pass


async def _refused_at_delivery(address: str) -> bool:
    resolver = GuardedResolver(allow_private=False)
    resolver._inner = _StaticResolver(address)  # type: ignore[assignment]  # DNS answers "address"
    try:
        await resolver.resolve("hook.example", 443, socket.AF_INET6)
    except OSError as exc:
        assert "non-public" in str(exc)
        return True
    return False


@pytest.mark.parametrize("kind", list(EMBEDDED))
@pytest.mark.parametrize("form", list(EMBEDDINGS))
async def test_every_ipv6_embedding_is_judged_by_the_embedded_ipv4(form: str, kind: str) -> None:
    address = EMBEDDINGS[form](ipaddress.IPv4Address(EMBEDDED[kind]))
    refused = kind != "public"
    url = f"https://[{address}]/hook"
    assert is_public(address) is not refused
    # at creation: the literal in the URL
    if refused:
        with pytest.raises(UnsafeUrl, match="non-public"):
            await check_url(url, allow_private=False)
        with pytest.raises(UnsafeUrl, match="non-public"):
            refuse_private_literal(url)
    else:
        await check_url(url, allow_private=False)
        refuse_private_literal(url)
    # at delivery: a name that resolves to it
    assert await _refused_at_delivery(address) is refused


def test_the_embedding_table_embeds_what_it_says() -> None:
    """The test's own encodings, checked against ipaddress where it decodes them."""
    a = ipaddress.IPv4Address("127.0.0.1")
    assert ipaddress.IPv6Address(EMBEDDINGS["ipv4-mapped ::ffff:0:0/96"](a)).ipv4_mapped == a
    assert ipaddress.IPv6Address(EMBEDDINGS["6to4 2002::/16"](a)).sixtofour == a
    assert ipaddress.IPv6Address(EMBEDDINGS["teredo client"](a)).teredo == (PUBLIC_V4, a)
    assert ipaddress.IPv6Address(EMBEDDINGS["teredo server"](a)).teredo == (a, PUBLIC_V4)
    assert EMBEDDINGS["nat64 64:ff9b::/96"](a) == "64:ff9b::7f00:1"
    assert EMBEDDINGS["nat64 local-use 64:ff9b:1::/48"](a) == "64:ff9b:1::7f00:1"
    assert EMBEDDINGS["ipv4-compatible ::/96"](a) == "::7f00:1"
    assert EMBEDDINGS["ipv4-translated ::ffff:0:0:0/96"](a) == "::ffff:0:7f00:1"


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=4))
def test_any_embedding_of_an_ipv4_is_refused_iff_the_ipv4_is(
    a: ipaddress.IPv4Address,
) -> None:
    refused = not is_public(str(a))
    for form, embed in EMBEDDINGS.items():
        address = embed(a)
        assert is_public(address) is not refused, (form, address)
        url = f"http://[{address}]:8080/hook"
        if refused:
            with pytest.raises(UnsafeUrl):
                refuse_private_literal(url)
        else:
            refuse_private_literal(url)


@given(
    st.ip_addresses(v=4),
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**80 - 1),
)
def test_6to4_and_teredo_are_judged_whatever_their_other_bits(
    a: ipaddress.IPv4Address, port: int, rest: int
) -> None:
    """The bits around the embedded address (6to4's subnet and interface,
    Teredo's flags and port) do not change the verdict."""
    refused = not is_public(str(a))
    six_to_four = _v6((0x2002 << 112) | (int(a) << 80) | rest)
    assert is_public(six_to_four) is not refused
    assert is_public(_teredo(PUBLIC_V4, a, port)) is not refused
    assert is_public(_teredo(a, PUBLIC_V4, port)) is not refused
