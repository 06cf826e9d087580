from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.config import JiraInstanceSettings
from bot.instances import InstanceDirectory, InstanceError
from bot.names import KnownInstance, unknown_instance
from bot.store.db import Database

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ACME = JiraInstanceSettings(url="https://acme.atlassian.net", type="cloud", alias="acme")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield database
    await database.close()


async def test_installed_instances_persist_and_config_ones_stay(db: Database) -> None:
    d = InstanceDirectory([ACME], db.kv)
    await d.load(NOW)
    assert d.default is not None and d.default.alias == "acme"  # the only one
    await d.install("https://jira.corp.example/", "server", "corp")
    assert d.default is None  # two now, none chosen
    again = InstanceDirectory([ACME], db.kv)
    await again.load(NOW)
    assert [i.url for i in again.all()] == ["https://acme.atlassian.net", "https://jira.corp.example"]
    assert again.find("CORP") is not None and again.find("corp").type == "server"  # type: ignore[union-attr]
    with pytest.raises(InstanceError, match="config file"):
        await again.uninstall("acme")
    await again.uninstall("corp")
    assert again.urls() == ["https://acme.atlassian.net"]


async def test_alias_and_default(db: Database) -> None:
    d = InstanceDirectory([ACME], db.kv)
    await d.load(NOW)
    await d.install("https://b.atlassian.net", "cloud")
    await d.set_alias("https://b.atlassian.net", "bee")
    await d.set_default("bee")
    reloaded = InstanceDirectory([ACME], db.kv)
    await reloaded.load(NOW)
    assert reloaded.default is not None and reloaded.default.url == "https://b.atlassian.net"
    assert reloaded.find("bee") is not None
    with pytest.raises(InstanceError, match="taken"):
        await reloaded.set_alias("bee", "acme")
    with pytest.raises(InstanceError, match="not a Jira URL"):
        await reloaded.install("acme.example", "cloud")
    with pytest.raises(InstanceError, match="installed already"):
        await reloaded.install("https://acme.atlassian.net", "cloud")


async def test_unknown_names_get_the_shared_sentence_and_did_you_mean(db: Database) -> None:
    d = InstanceDirectory([ACME], db.kv)
    await d.load(NOW)
    await d.install("https://jira.corp.example", "server", "corp")
    known = [KnownInstance(ACME.url, "acme"), KnownInstance("https://jira.corp.example", "corp")]
    sentence = (
        "There is no Jira instance `acmee` (did you mean `acme`?). Known instances: "
        "`acme` (https://acme.atlassian.net), `corp` (https://jira.corp.example)."
    )
    assert unknown_instance("acmee", known) == sentence
    for call in (d.uninstall, d.set_default, d.remove_alias, lambda n: d.set_alias(n, "x")):
        with pytest.raises(InstanceError) as e:
            await call("acmee")
        assert str(e.value) == sentence
    with pytest.raises(InstanceError) as by_host:
        d.require("jira.corp.example")
    assert str(by_host.value) == unknown_instance("jira.corp.example", known)
    assert "(did you mean `corp`?)" in str(by_host.value)
    # URL or alias, in any case, with or without a trailing slash.
    assert d.require("HTTPS://JIRA.CORP.EXAMPLE/").alias == "corp"
    assert (await d.set_default("Corp")) == d.require("corp")


async def test_remove_alias_by_alias_or_url(db: Database) -> None:
    d = InstanceDirectory([ACME], db.kv)
    await d.load(NOW)
    await d.install("https://b.atlassian.net", "cloud", "bee")
    removed = await d.remove_alias("BEE")
    assert (removed.url, removed.alias) == ("https://b.atlassian.net", "bee")
    assert d.find("bee") is None and d.require("https://b.atlassian.net").alias == ""
    with pytest.raises(InstanceError) as e:
        await d.remove_alias("https://b.atlassian.net/")
    assert str(e.value) == "https://b.atlassian.net has no alias."
    assert (await d.remove_alias(ACME.url.upper())).alias == "acme"
    assert d.find("acme") is None
