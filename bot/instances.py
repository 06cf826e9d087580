"""The Jira instances the bot serves: those in the config file, plus those an admin installs with
`/jira instance install`, which live in the database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bot.config import CloudOAuthSettings, JiraInstanceSettings, ServerOAuthSettings, ServiceAccount
from bot.names import KnownInstance, find_known_instance, unknown_instance
from bot.security.urls import SETTING as PRIVATE_URLS_SETTING
from bot.security.urls import UnsafeUrl
from bot.store.interfaces import KeyValueRepository

INSTALLED_KEY = "instances:installed"
DEFAULT_KEY = "instances:default"

InstanceType = Literal["cloud", "server"]


class InstanceError(ValueError):
    """An instance operation that cannot be done; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Instance:
    url: str
    type: InstanceType
    alias: str = ""
    source: Literal["config", "installed"] = "config"
    service_account: ServiceAccount | None = None
    oauth: CloudOAuthSettings | None = None
    oauth1: ServerOAuthSettings | None = None

    @property
    def is_cloud(self) -> bool:
        return self.type == "cloud"

    @property
    def label(self) -> str:
        return f"{self.alias} ({self.url})" if self.alias else self.url

    @property
    def known(self) -> KnownInstance:
        return KnownInstance(self.url, self.alias)

    def named(self, name: str) -> bool:
        """Whether `name` is this instance's URL or alias (as bot.names finds instances)."""
        return find_known_instance(name, (self.known,)) is not None


def _from_settings(s: JiraInstanceSettings) -> Instance:
    return Instance(
        url=s.url,
        type=s.type,
        alias=s.alias or "",
        source="config",
        service_account=s.service_account,
        oauth=s.oauth,
        oauth1=s.oauth1,
    )


class InstanceDirectory:
    """Configured instances come first and cannot be uninstalled from chat.

    `check_url` (the app passes UrlPolicy.check) refuses, with UnsafeUrl, a URL installed
    from chat that leads to a private address: users would send their tokens there. Configured
    instances are not checked: the operator wrote them, and on-premises Jira is often private.
    """

    def __init__(
        self,
        configured: Sequence[JiraInstanceSettings],
        kv: KeyValueRepository,
        *,
        check_url: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._configured = tuple(_from_settings(s) for s in configured)
        self._kv = kv
        self._check_url = check_url
        self._installed: tuple[Instance, ...] = ()
        self._aliases: dict[str, str] = {}  # url -> alias set from chat, for any instance
        self._default = ""

    async def load(self, now: datetime) -> None:
        stored = await self._kv.get(INSTALLED_KEY, now=now) or {}
        self._installed = tuple(
            Instance(url=i["url"], type=i["type"], alias=i.get("alias", ""), source="installed")
            for i in stored.get("instances", [])
        )
        self._aliases = dict(stored.get("aliases", {}))
        self._default = (await self._kv.get(DEFAULT_KEY, now=now)) or ""

    def all(self) -> list[Instance]:
        out = []
        for inst in (*self._configured, *self._installed):
            alias = self._aliases.get(inst.url)
            if alias is not None:
                inst = Instance(
                    url=inst.url,
                    type=inst.type,
                    alias=alias,
                    source=inst.source,
                    service_account=inst.service_account,
                    oauth=inst.oauth,
                    oauth1=inst.oauth1,
                )
            out.append(inst)
        return out

    def urls(self) -> list[str]:
        return [i.url for i in self.all()]

    def find(self, name: str) -> Instance | None:
        """By URL or alias, case and a trailing slash aside (bot.names)."""
        everything = self.all()
        known = [inst.known for inst in everything]
        found = find_known_instance(name, known)
        return everything[known.index(found)] if found is not None else None

    def require(self, name: str) -> Instance:
        """The instance `name` names; InstanceError otherwise, with the sentence and did-you-mean
        every entry point gives for an unknown instance (bot.names)."""
        found = self.find(name)
        if found is None:
            known = [inst.known for inst in self.all()]
            raise InstanceError(unknown_instance(name, known) or f"There is no Jira instance `{name}`.")
        return found

    @property
    def default(self) -> Instance | None:
        if self._default:
            found = self.find(self._default)
            if found:
                return found
        instances = self.all()
        return instances[0] if len(instances) == 1 else None

    async def _save(self) -> None:
        await self._kv.put(
            INSTALLED_KEY,
            {
                "instances": [{"url": i.url, "type": i.type, "alias": i.alias} for i in self._installed],
                "aliases": self._aliases,
            },
        )

    async def install(self, url: str, type_: InstanceType, alias: str = "") -> Instance:
        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise InstanceError(f"{url!r} is not a Jira URL: give it as https://your-site.atlassian.net")
        if self.find(url):
            raise InstanceError(f"{url} is installed already.")
        if alias and self.find(alias):
            raise InstanceError(f"The alias {alias!r} is taken.")
        if self._check_url is not None:
            try:
                await self._check_url(url)
            except UnsafeUrl as e:
                raise InstanceError(
                    f"{url} is refused: {e} Users' Jira tokens would be sent there. For Jira on a "
                    f"private network, set `{PRIVATE_URLS_SETTING}: true` in the configuration file."
                    if e.address is not None
                    else f"{url} is refused: {e}"
                ) from None
        inst = Instance(url=url, type=type_, alias=alias, source="installed")
        self._installed = (*self._installed, inst)
        await self._save()
        return inst

    async def check_before_sending(self, inst: Instance) -> None:
        """Raise UnsafeUrl when a user's token may not be sent to `inst` now. An instance
        installed from chat is checked again each time: its name may resolve elsewhere than at
        install (DNS rebinding)."""
        if inst.source == "installed" and self._check_url is not None:
            await self._check_url(inst.url)

    async def uninstall(self, name: str) -> Instance:
        inst = self.require(name)
        if inst.source == "config":
            raise InstanceError(f"{inst.url} comes from the config file; remove it there.")
        self._installed = tuple(i for i in self._installed if i.url != inst.url)
        self._aliases.pop(inst.url, None)
        await self._save()
        if self._default and inst.named(self._default):
            await self.set_default("")
        return inst

    async def set_alias(self, name: str, alias: str) -> Instance:
        inst = self.require(name)
        other = self.find(alias) if alias else None
        if other is not None and other.url != inst.url:
            raise InstanceError(f"The alias {alias!r} is taken by {other.url}.")
        self._aliases[inst.url] = alias
        await self._save()
        return self.find(inst.url) or inst

    async def remove_alias(self, name: str) -> Instance:
        """Take its alias from the instance `name` names (its alias or its URL); the instance as
        it was, with the alias it had."""
        inst = self.require(name)
        if not inst.alias:
            raise InstanceError(f"{inst.url} has no alias.")
        await self.set_alias(inst.url, "")
        return inst

    async def set_default(self, name: str) -> Instance | None:
        inst = self.require(name) if name else None
        self._default = inst.url if inst else ""
        await self._kv.put(DEFAULT_KEY, self._default)
        return inst
