"""Connected Jira accounts: who is connected to which instance, with what, and their switches."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

NOTIFICATION_KINDS = ("assignee", "mention", "reporter", "watching")


class AuthType(StrEnum):
    OAUTH2 = "oauth2"  # Jira Cloud, OAuth 2.0 (3LO)
    OAUTH1 = "oauth1"  # Jira Server/Data Center, application link
    PAT = "pat"  # Jira Server/Data Center, personal access token


class AccountError(Exception):
    """A problem the user can act on; the message is shown to them as is."""


class TokenRejected(AccountError):
    """Jira refused the credentials (401/403 on `myself`). A `verify` callable raises it."""


@dataclass(frozen=True, slots=True)
class JiraIdentity:
    """Who a credential belongs to in Jira: `account_id` on Cloud, `name` (username) on Server."""

    account_id: str | None = None
    name: str | None = None
    display_name: str = ""
    email: str | None = None


@dataclass(frozen=True, slots=True)
class OAuth2Secret:
    access_token: str
    refresh_token: str
    expires_at: datetime
    cloud_id: str
    scope: str = ""

    def __repr__(self) -> str:
        return f"OAuth2Secret(cloud_id={self.cloud_id!r}, expires_at={self.expires_at.isoformat()}, ***)"


@dataclass(frozen=True, slots=True)
class OAuth1Secret:
    token: str
    token_secret: str

    def __repr__(self) -> str:
        return "OAuth1Secret(***)"


@dataclass(frozen=True, slots=True)
class PatSecret:
    token: str

    def __repr__(self) -> str:
        return "PatSecret(***)"


Secret = OAuth2Secret | OAuth1Secret | PatSecret


def secret_auth_type(secret: Secret) -> AuthType:
    if isinstance(secret, OAuth2Secret):
        return AuthType.OAUTH2
    if isinstance(secret, OAuth1Secret):
        return AuthType.OAUTH1
    return AuthType.PAT


def secret_to_dict(secret: Secret) -> dict[str, Any]:
    if isinstance(secret, OAuth2Secret):
        return {
            "access_token": secret.access_token,
            "refresh_token": secret.refresh_token,
            "expires_at": secret.expires_at.astimezone(UTC).isoformat(),
            "cloud_id": secret.cloud_id,
            "scope": secret.scope,
        }
    if isinstance(secret, OAuth1Secret):
        return {"token": secret.token, "token_secret": secret.token_secret}
    return {"token": secret.token}


def secret_from_dict(auth_type: str, data: dict[str, Any]) -> Secret:
    kind = AuthType(auth_type)
    if kind is AuthType.OAUTH2:
        return OAuth2Secret(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]),
            expires_at=datetime.fromisoformat(data["expires_at"]).astimezone(UTC),
            cloud_id=str(data["cloud_id"]),
            scope=str(data.get("scope", "")),
        )
    if kind is AuthType.OAUTH1:
        return OAuth1Secret(token=str(data["token"]), token_secret=str(data["token_secret"]))
    return PatSecret(token=str(data["token"]))


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    """Which Jira events about their issues a connected user gets as a DM (all on by default)."""

    assignee: bool = True
    mention: bool = True
    reporter: bool = True
    watching: bool = True

    def enabled(self, kind: str) -> bool:
        if kind not in NOTIFICATION_KINDS:
            raise ValueError(f"unknown notification {kind!r}; one of {', '.join(NOTIFICATION_KINDS)}")
        return bool(getattr(self, kind))

    def with_kind(self, kind: str, on: bool) -> NotificationSettings:
        self.enabled(kind)  # validates the name
        return replace(self, **{kind: on})

    def to_json(self) -> dict[str, Any]:
        return {"notifications": {k: getattr(self, k) for k in NOTIFICATION_KINDS}}

    @classmethod
    def from_json(cls, data: Any) -> NotificationSettings:
        # Unknown or missing switches fall back to on, so settings written by other releases load.
        values = data.get("notifications", {}) if isinstance(data, dict) else {}
        return cls(**{k: bool(values.get(k, True)) for k in NOTIFICATION_KINDS})


@dataclass(frozen=True, slots=True)
class Connection:
    """A Mattermost user's connection to one Jira instance (`instance_id` is its base URL)."""

    mm_user_id: str
    instance_id: str
    identity: JiraIdentity
    secret: Secret = field(repr=False)
    connected_at: datetime
    updated_at: datetime
    notifications: NotificationSettings = NotificationSettings()
    # Bumped at every change of the row: lets a writer replace exactly the version it read.
    revision: int = 0

    @property
    def auth_type(self) -> AuthType:
        return secret_auth_type(self.secret)

    @property
    def jira_user_key(self) -> str:
        """The id Jira uses for this user in API calls: accountId on Cloud, username on Server."""
        return self.identity.account_id or self.identity.name or ""


@dataclass(frozen=True, slots=True)
class UserPrefs:
    mm_user_id: str
    default_instance: str | None = None
    last_project: str | None = None
    updated_at: datetime | None = None
