"""Where the bot may send tokens and answers: instance URLs (no private addresses) and a slash
command's response_url (Mattermost's origin only)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.instances import InstanceDirectory, InstanceError
from bot.mattermost.payloads import response_url_allowed
from bot.security.urls import UnsafeUrl, UrlPolicy, address_allowed, check_public_url, literal_address
from bot.store.db import Database

REFUSED = [
    "127.0.0.1",
    "127.255.0.9",
    "::1",
    "169.254.169.254",  # cloud metadata service
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "100.64.0.1",  # carrier-grade NAT
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",  # site-local
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "0.0.0.0",
    "::",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "192.0.2.1",  # documentation
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2001:4860::8888", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("text", REFUSED)
def test_private_and_special_addresses_are_refused(text: str) -> None:
    assert address_allowed(ip_address(text)) is False


@pytest.mark.parametrize("text", ALLOWED)
def test_public_addresses_are_allowed(text: str) -> None:
    assert address_allowed(ip_address(text)) is True


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("[::1]", "::1"),
        ("::ffff:7f00:1", "::ffff:127.0.0.1"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_numeric_host_spellings_are_read_as_the_c_library_does(host: str, address: str) -> None:
    assert literal_address(host) == ip_address(address)


@pytest.mark.parametrize("host", ["jira.example.com", "1e100.net", "256.1.1.1", "08.1.1.1", "1.16777216", ""])
def test_names_are_not_numbers(host: str) -> None:
    assert literal_address(host) is None


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_ipv4_spelling_and_its_mapped_form_are_judged_alike(number: int) -> None:
    address = IPv4Address(number)
    assert literal_address(str(number)) == address
    assert literal_address(hex(number)) == address
    mapped = IPv6Address(f"::ffff:{address}")
    assert address_allowed(mapped) == address_allowed(address)


class Resolver:
    """A fake DNS: answers what the test says and counts the questions."""

    def __init__(self, *answers: Iterable[str] | OSError) -> None:
        self._answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        answer = self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]
        if isinstance(answer, OSError):
            raise answer
        return list(answer)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9",
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "https://0.0.0.0",
        "http://[fe80::1%25eth0]/",
    ],
)
async def test_numeric_urls_are_refused_without_asking_the_resolver(url: str) -> None:
    resolver = Resolver(["8.8.8.8"])
    with pytest.raises(UnsafeUrl) as refused:
        await check_public_url(url, allow_private=False, resolve=resolver)
    assert refused.value.address is not None
    assert resolver.asked == []


async def test_a_name_is_refused_when_any_of_its_addresses_is_private() -> None:
    resolver = Resolver(["93.184.216.34", "10.1.2.3"])
    with pytest.raises(UnsafeUrl, match=r"10\.1\.2\.3"):
        await check_public_url("https://jira.corp.example:8443/jira", allow_private=False, resolve=resolver)
    assert resolver.asked == [("jira.corp.example", 8443)]
    await check_public_url("http://jira.example.com", allow_private=False, resolve=Resolver(["8.8.8.8"]))


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(UnsafeUrl, match="cannot be resolved") as refused:
        await check_public_url("https://nowhere.example", allow_private=False, resolve=Resolver(OSError()))
    assert refused.value.address is None
    with pytest.raises(UnsafeUrl, match="cannot be resolved"):
        await check_public_url("https://nothing.example", allow_private=False, resolve=Resolver([]))


async def test_the_setting_lets_private_urls_pass_without_resolving() -> None:
    resolver = Resolver(["127.0.0.1"])
    await check_public_url("http://127.0.0.1:9", allow_private=True, resolve=resolver)
    await check_public_url("http://jira.lan", allow_private=True, resolve=resolver)
    assert resolver.asked == []
    with pytest.raises(UnsafeUrl, match="not an http"):
        await check_public_url("file:///etc/passwd", allow_private=True, resolve=resolver)


async def test_the_system_resolver_runs_on_the_loop() -> None:
    with pytest.raises(UnsafeUrl) as refused:
        await UrlPolicy().check("http://localhost:9")
    assert refused.value.address is not None and refused.value.address.is_loopback


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield database
    await database.close()


async def test_installing_a_private_instance_names_the_setting(db: Database) -> None:
    resolver = Resolver(["10.0.0.5"])
    strict = InstanceDirectory((), db.kv, check_url=UrlPolicy(resolve=resolver).check)
    await strict.load(datetime.now(UTC))
    with pytest.raises(InstanceError) as refused:
        await strict.install("https://jira.corp.example", "server")
    assert "10.0.0.5" in str(refused.value)
    assert "`security.allow_private_instance_urls: true`" in str(refused.value)
    assert strict.all() == []

    lenient = InstanceDirectory((), db.kv, check_url=UrlPolicy(allow_private=True, resolve=resolver).check)
    await lenient.load(datetime.now(UTC))
    await lenient.install("https://jira.corp.example", "server")
    assert lenient.urls() == ["https://jira.corp.example"]


# -- response_url -------------------------------------------------------------------------------

MM = "https://chat.example.com"


@pytest.mark.parametrize(
    "url",
    [
        "https://chat.example.com/hooks/commands/abc",
        "https://CHAT.example.com:443/hooks/commands/abc",
        "https://chat.example.com./hooks/commands/abc",
    ],
)
def test_response_url_on_mattermosts_origin_is_allowed(url: str) -> None:
    assert response_url_allowed(url, MM) is True


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/hooks/commands/abc",
        "http://chat.example.com/hooks/commands/abc",  # another scheme
        "https://chat.example.com:8443/hooks/commands/abc",  # another port
        "https://chat.example.com.evil.example/hooks/commands/abc",
        "https://chat.example.com@evil.example/hooks/commands/abc",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8065/hooks/commands/abc",
        "https://chat.example.com:99999/hooks/commands/abc",
        "ftp://chat.example.com/hooks/commands/abc",
        "",
    ],
)
def test_response_url_elsewhere_is_refused(url: str) -> None:
    assert response_url_allowed(url, MM) is False


def test_response_url_allowed_hosts() -> None:
    hosts = ("mm-internal.example", "Chat2.Example:8065")
    assert response_url_allowed("http://mm-internal.example:8065/hooks/commands/a", MM, hosts) is True
    assert response_url_allowed("http://chat2.example:8065/hooks/commands/a", MM, hosts) is True
    assert response_url_allowed("http://chat2.example:9000/hooks/commands/a", MM, hosts) is False
    assert response_url_allowed("https://evil.example/hooks/commands/a", MM, hosts) is False
    # Without mattermost.url (console mode), only the listed hosts.
    assert response_url_allowed("https://chat.example.com/hooks/commands/a", None, hosts) is False
