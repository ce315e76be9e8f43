"""The SSRF guard refuses webhook targets on non-public addresses."""

from __future__ import annotations

import pytest

from service.webhooks.ssrf import UnsafeUrl, check_url, is_public

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
