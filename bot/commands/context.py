"""What a command, button or dialog handler gets: who asked, where, and the services to act with.

Handlers act in Jira only with the asking user's own credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.accounts.service import AccountError, AccountService, ReconnectRequired
from bot.config import Settings
from bot.gate.service import GateService
from bot.instances import Instance, InstanceDirectory
from bot.jira.client import JiraGateway, JiraSession
from bot.jira.errors import JiraError
from bot.mattermost.client import MattermostClient
from bot.mattermost.models import DeliveryError, MattermostNotConfigured
from bot.mattermost.payloads import ActionFactory
from bot.metrics import Metrics
from bot.pipeline.subscriptions import SubscriptionCache
from bot.routing.vocabulary import KnownInstance, find_known_instance, unknown_instance
from bot.security.signing import ContextSigner
from bot.store.db import Database


class CommandError(Exception):
    """A reason the request cannot be done, worded for the user (what happened, what to do)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Deps:
    """The services handlers use; built once by the composition root."""

    settings: Settings
    db: Database
    instances: InstanceDirectory
    accounts: AccountService
    jira: JiraGateway
    mattermost: MattermostClient
    subscriptions: SubscriptionCache
    signer: ContextSigner
    actions: ActionFactory
    metrics: Metrics
    clock: Callable[[], datetime]
    # Sends a DM from the bot (used to tell a user their Jira connection was dropped).
    notify_user: Callable[[str, str], Awaitable[None]]
    # The secret Jira's webhooks carry (configured, or generated into the data directory).
    webhook_secret: str = ""
    gate: GateService | None = None  # the change gate, when configured

    @property
    def public_url(self) -> str:
        return self.settings.server.public_url

    @property
    def dialog_url(self) -> str:
        return f"{self.public_url}/mattermost/dialogs"

    @property
    def unconfigured_commands(self) -> tuple[str, ...]:
        """First words of the commands of features this bot has not configured (not in help)."""
        return () if self.gate is not None else ("change",)


@dataclass
class Caller:
    """The Mattermost user behind a command, click or dialog, and where they are."""

    deps: Deps
    user_id: str
    channel_id: str
    team_id: str = ""
    team_domain: str = ""  # the team's name, as in its URL
    channel_name: str = ""
    user_name: str = ""
    trigger_id: str = ""
    root_id: str = ""
    _admin: bool | None = field(default=None, repr=False)
    _admin_unknown: str = field(default="", repr=False)
    _jira_instance: Instance | None = field(default=None, repr=False)

    def now(self) -> datetime:
        return self.deps.clock()

    async def is_admin(self) -> bool:
        """Asked of Mattermost (never trusted from the request), once per request."""
        if self._admin is None:
            try:
                self._admin = await self.deps.mattermost.is_system_admin(self.user_id)
            except MattermostNotConfigured as e:
                self._admin, self._admin_unknown = False, str(e)
            except DeliveryError:
                self._admin = False
        return self._admin

    async def require_admin(self) -> None:
        if not await self.is_admin():
            # Without a Mattermost server nobody can be known as an admin: say that instead.
            raise CommandError(self._admin_unknown or "This command is for Mattermost system admins.")

    def instance_named(self, name: str) -> Instance:
        """The instance `name` names, found and refused as the config file's subscriptions are
        (URL or alias, case aside; a did-you-mean otherwise)."""
        everything = self.deps.instances.all()
        known = [KnownInstance(i.url, i.alias) for i in everything]
        found = find_known_instance(name, known)
        if found is None:
            raise CommandError(unknown_instance(name, known) or f"There is no Jira instance `{name}`.")
        return everything[known.index(found)]

    async def choose_instance(self, requested: str | None = None) -> Instance:
        """`--instance` when given, else the user's default, else the only instance they are
        connected to, else the only one installed; else an error that says how to choose."""
        if requested:
            return self.instance_named(requested)
        accounts = self.deps.accounts
        default = await accounts.default_instance(self.user_id)
        if default and (found := self.deps.instances.find(default)) is not None:
            return found
        connected = [
            inst
            for c in await accounts.connections_for(self.user_id)
            if (inst := self.deps.instances.find(c.instance_id)) is not None
        ]
        if len(connected) == 1:
            return connected[0]
        # The site default an admin set, else the only instance installed.
        site_default = self.deps.instances.default
        if site_default is not None:
            return site_default
        everything = self.deps.instances.all()
        if not everything:
            raise CommandError(
                "No Jira instance is installed yet: add one under `jira.instances` in the config "
                "file, or a system admin can with `/jira setup`."
            )
        names = ", ".join(f"`{i.alias or i.url}`" for i in everything)
        raise CommandError(
            f"Several Jira instances are installed ({names}): add `--instance URL|alias` to say which."
        )

    async def jira(self, instance: Instance) -> JiraSession:
        """A Jira session with the user's own credentials; CommandError when not connected."""
        try:
            creds = await self.deps.accounts.credentials_for(self.user_id, instance.url, now=self.now())
        except ReconnectRequired as e:
            if e.notify:
                await self.deps.notify_user(self.user_id, str(e))
            raise CommandError(str(e)) from None
        except AccountError as e:
            raise CommandError(str(e)) from None
        if creds is None:
            raise CommandError(
                f"Your Mattermost account is not connected to {instance.label}. "
                f"Run `/jira connect{' ' + instance.alias if instance.alias else ''}` first."
            )
        self._jira_instance = instance
        return self.deps.jira.session(instance.url, creds, is_cloud=instance.is_cloud)

    async def explain(self, error: JiraError) -> str:
        """What the user is told about a Jira failure; a refused token disconnects them."""
        instance = self._jira_instance
        if error.kind == "auth" and instance is not None:
            due = await self.deps.accounts.on_revoked(self.user_id, instance.url, now=self.now())
            message = (
                f"Jira did not accept your credentials for {instance.label}, so your account was "
                "disconnected. Run `/jira connect` to connect again."
            )
            if due:
                await self.deps.notify_user(self.user_id, message)
            return message
        return error.user_message()


@dataclass
class CommandContext(Caller):
    """A slash command: its arguments and `--instance` option."""

    args: tuple[str, ...] = ()
    instance_arg: str | None = None
    command: str = ""
    response_url: str = ""


@dataclass
class ActionContext(Caller):
    """A button click or menu choice on a post of the bot's; `data` is the verified context."""

    post_id: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    selected: str | None = None


@dataclass
class DialogContext(Caller):
    """A submitted dialog; `state` is the verified context it was opened with."""

    state: Mapping[str, Any] = field(default_factory=dict)
    submission: Mapping[str, Any] = field(default_factory=dict)
    cancelled: bool = False
